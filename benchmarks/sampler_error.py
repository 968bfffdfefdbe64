"""ODE-solver error at equal network calls on the oracle Gaussian: EDM's Heun vs DDIM vs DPM-Solver++.

Data x_0 ~ N(m, diag(s^2)) on 1x8x8 "images" (m ~ U(-0.5, 0.5), s log-uniform in [0.05, 0.5], as
``benchmarks/sampler_quality.py``), T = 1000 linear betas, the exact eps-predictor, no clipping. Every
deterministic sampler here solves the same probability-flow ODE from x_T (t = T-1) down to t = 0 and then
returns D(x; sigma_0); for this data the ODE keeps (x_edm - m) / sqrt(s^2 + sigma^2) constant
(x_edm = x_t / sqrt(abar_t)), so the exact answer is closed-form (``tests/sampling/test_heun.py``'s
``probability_flow_x0``). Per sampler and budget of network calls (NFE):

* ``ode_rms``: RMS over images and pixels of (sample - exact ODE solution), for the same x_T;
* ``fd_exact``: the Frechet distance of the sampler's exact output Gaussian to the data Gaussian
  (:func:`ddpm.testing.exact_moments`; also for Heun with churn, which is stochastic).

Heun with N levels costs 2N - 1 calls, so the budgets are odd: 9, 19, 39, 79 (N = 5, 10, 20, 40).

    python benchmarks/sampler_error.py              # JSON on stdout
"""

from __future__ import annotations

import argparse
import json
import math
import platform
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # the closed-form reference of the tests

from ddpm.diffusion import GaussianDiffusion
from ddpm.sampling import DDIMSampler, DPMSolverPPSampler, HeunSampler
from ddpm.testing import GaussianOracle, exact_moments
from tests.sampling.test_heun import probability_flow_x0

NFES = (9, 19, 39, 79)


def samplers(d: GaussianDiffusion) -> dict:
    """name -> factory(nfe) of a sampler making exactly ``nfe`` network calls."""
    levels = lambda nfe: (nfe + 1) // 2
    churn = {"s_churn": 40.0, "s_tmin": 0.05, "s_tmax": 50.0, "s_noise": 1.0}
    return {
        "ddim (uniform)": lambda nfe: DDIMSampler(d, steps=nfe, clip_denoised=False),
        "dpm-solver++ 2M (logsnr)": lambda nfe: DPMSolverPPSampler(d, steps=nfe, clip_denoised=False),
        "heun (karras rho=7)": lambda nfe: HeunSampler(d, steps=levels(nfe), clip_denoised=False),
        "heun (logsnr)": lambda nfe: HeunSampler(d, steps=levels(nfe), spacing="logsnr", clip_denoised=False),
        "heun churn 40 (karras)": lambda nfe: HeunSampler(d, steps=levels(nfe), clip_denoised=False, **churn),
    }


def make_oracle(d: GaussianDiffusion, seed: int) -> GaussianOracle:
    g = torch.Generator().manual_seed(seed)
    mean = (torch.rand(64, generator=g, dtype=torch.float64) - 0.5).view(1, 8, 8)
    log_std = torch.empty(64, dtype=torch.float64).uniform_(math.log(0.05), math.log(0.5), generator=g)
    return GaussianOracle(d, mean, log_std.exp().view(1, 8, 8))


def evaluate(sampler, oracle: GaussianOracle, x_top: torch.Tensor, reference: torch.Tensor) -> dict:
    mean, var = exact_moments(sampler, oracle)
    row = {"nfe": sampler.num_steps, "fd_exact": oracle.frechet_distance(mean, var)}
    if getattr(sampler, "s_churn", 0.0) == 0:  # deterministic: compare with the exact ODE solution
        out = sampler.sample_from(oracle, x_top.clone(), sampler.timesteps[-1])
        row["ode_rms"] = float(((out - reference) ** 2).mean().sqrt())
    return row


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--nfe", type=int, nargs="+", default=list(NFES))
    parser.add_argument("--images", type=int, default=1024)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    d = GaussianDiffusion()
    oracle = make_oracle(d, args.seed)
    g = torch.Generator().manual_seed(args.seed + 1)
    x_top = torch.randn((args.images, *oracle.shape), generator=g, dtype=torch.float64)
    reference = probability_flow_x0(oracle, x_top, d.num_timesteps - 1)
    start = time.perf_counter()
    results = {
        name: {str(nfe): evaluate(factory(nfe), oracle, x_top, reference) for nfe in args.nfe}
        for name, factory in samplers(d).items()
    }
    report = {
        "setup": {
            "data": "N(m, diag(s^2)), 1x8x8, s log-uniform [0.05, 0.5]",
            "schedule": "linear, T=1000",
            "images": args.images,
            "seed": args.seed,
            "torch": torch.__version__,
            "python": platform.python_version(),
            "wall_s": round(time.perf_counter() - start, 2),
        },
        "results": results,
    }
    print(json.dumps(report, indent=2))
    return report


if __name__ == "__main__":
    main()
