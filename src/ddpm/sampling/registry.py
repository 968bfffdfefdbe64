"""The samplers by name: :data:`SAMPLERS` and :func:`make_sampler`.

The names and defaults are those of the Hydra ``sampler`` group (``configs/sampler/<name>.yaml``);
a test keeps the two equal.

======================  ===========================================================  =========
name                    class and defaults                                           NFE
======================  ===========================================================  =========
``ancestral``           DDPM Algorithm 2 on all T steps (``steps=k`` respaces)        T (or k)
``ancestral_respaced``  the same on ``steps=100`` uniformly spaced steps (improved    steps
                        DDPM, Sec. 4)
``ddim``                DDIM, ``eta=0.0``, ``spacing="uniform"``, ``steps=50``         steps
``ddim_quadratic``      DDIM on quadratically spaced steps                           steps
``dpm_solver_pp_2m``    DPM-Solver++(2M), ``spacing="logsnr"``, ``steps=20``           steps
``dpm_solver_pp_3m``    DPM-Solver++(3M), the same with ``order=3``                   steps
``heun``                EDM's Heun sampler (Karras et al. 2022, Algorithm 1) on      2 steps - 1
                        ``steps=18`` sigma levels, ``spacing="karras"`` (rho 7)
``heun_churn``          the same with Algorithm 2's churn on ``steps=64`` levels:    2 steps - 1
                        ``s_churn=40``, ``s_tmin=0.05``, ``s_tmax=50``,
                        ``s_noise=1.003`` (EDM's ImageNet-64 churn)
======================  ===========================================================  =========
"""

from __future__ import annotations

from typing import Any

from ddpm.diffusion.denoiser import null_labels
from ddpm.diffusion.gaussian import GaussianDiffusion
from ddpm.errors import ConfigError
from ddpm.sampling.ancestral import AncestralSampler
from ddpm.sampling.base import Sampler
from ddpm.sampling.ddim import DDIMSampler
from ddpm.sampling.dpm_solver import DPMSolverPPSampler
from ddpm.sampling.heun import HeunSampler

_ANCESTRAL = {"clip_denoised": True, "steps": None, "spacing": "uniform"}
_DDIM = {"steps": 50, "eta": 0.0, "spacing": "uniform", "clip_denoised": True}
_DPM_2M = {"steps": 20, "order": 2, "spacing": "logsnr", "clip_denoised": True, "lower_order_final": True}
_HEUN = {
    "steps": 18,
    "spacing": "karras",
    "rho": 7.0,
    "clip_denoised": True,
    "s_churn": 0.0,
    "s_tmin": 0.0,
    "s_tmax": None,
    "s_noise": 1.0,
    "sigma_min": None,
    "sigma_max": None,
}
_CHURN = {"steps": 64, "s_churn": 40.0, "s_tmin": 0.05, "s_tmax": 50.0, "s_noise": 1.003}

# name -> (class, default settings); the same as configs/sampler/<name>.yaml
SAMPLERS: dict[str, tuple[type[Sampler], dict[str, Any]]] = {
    "ancestral": (AncestralSampler, _ANCESTRAL),
    "ancestral_respaced": (AncestralSampler, {**_ANCESTRAL, "steps": 100}),
    "ddim": (DDIMSampler, _DDIM),
    "ddim_quadratic": (DDIMSampler, {**_DDIM, "spacing": "quadratic"}),
    "dpm_solver_pp_2m": (DPMSolverPPSampler, _DPM_2M),
    "dpm_solver_pp_3m": (DPMSolverPPSampler, {**_DPM_2M, "order": 3, "max_third_order_step": 1.0}),
    "heun": (HeunSampler, _HEUN),
    "heun_churn": (HeunSampler, {**_HEUN, **_CHURN}),
}


def make_sampler(name: str, diffusion: GaussianDiffusion, **settings: Any) -> Sampler:
    """Build the sampler called ``name`` (see the table above; ``-`` may stand for ``_``) for ``diffusion``.

    ``settings`` override the defaults, e.g. ``make_sampler("ddim", d, steps=100, eta=0.5)``;
    ``guidance_scale=w`` wraps it in classifier-free guidance (:mod:`ddpm.sampling.guidance`; None: none),
    ``null_cond`` its null conditioning (class labels' null class by default).
    """
    from ddpm.sampling.guidance import with_guidance

    guidance_scale = settings.pop("guidance_scale", None)
    null_cond = settings.pop("null_cond", null_labels)
    key = name.lower().replace("-", "_").replace("++", "_pp")
    if key not in SAMPLERS:
        raise ConfigError(f"unknown sampler {name!r}: choose one of {', '.join(SAMPLERS)}")
    cls, defaults = SAMPLERS[key]
    return with_guidance(cls(diffusion, **{**defaults, **settings}), guidance_scale, null_cond)


__all__ = ["SAMPLERS", "make_sampler"]
