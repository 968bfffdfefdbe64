"""Quality per network call: our samplers vs diffusers' matching schedulers, same model, same noise.

At each budget of network calls (10, 20, 50; every model evaluation is counted), each deterministic
sampler of ours with its shipped defaults (``make_sampler(name)``, configs/sampler/*.yaml) and the
diffusers schedulers that implement the same method decode the same x_T (drawn once per model):

* DDIM, eta = 0 (ours ``ddim``, ``uniform`` spacing: round(i (T-1) / (S-1))) vs ``DDIMScheduler`` with
  ``timestep_spacing="linspace"`` (the same timesteps, but diffusers' DDIM steps from t to t - T // S,
  not to the next of them, so from the second step on the network is told a timestep that is not the
  sample's) and with its default ``"leading"`` (0, T/S, ..., never T-1), and ``EulerDiscreteScheduler``
  (default ``linspace``, fractional timesteps): DDIM with eta = 0 is Euler's method on the same
  probability-flow ODE in (x / sqrt(abar), sigma), so that row is the same chain as ours;
* DPM-Solver++(2M) and (3M) (ours ``dpm_solver_pp_2m`` / ``_3m``, ``logsnr`` spacing) vs
  ``DPMSolverMultistepScheduler`` (``solver_order`` 2 / 3) with ``use_lu_lambdas=True`` (uniform in
  log-SNR, as ours) and with its default ``linspace`` (T-1 down to T/S, then one step to sigma = 0);
* EDM's Heun (ours ``heun``: Karras sigmas in [0.002, 80] rounded to the model's) vs
  ``HeunDiscreteScheduler`` with ``use_karras_sigmas=True`` (the model's whole sigma range, not rounded)
  and with its default ``linspace``. N levels cost 2N - 1 calls, so budget b runs N = (b + 1) // 2: 9,
  19 and 49 calls.

Last in a method come ours with diffusers' setting where that differs from our default (DDIM ``leading``,
DPM-Solver time-``uniform``, Heun over the model's whole sigma range), to tell a spacing's effect from the
solver's.

diffusers is configured to the model: ``trained_betas`` = its betas, ``prediction_type="epsilon"``, DDIM
``set_alpha_to_one=True`` (the last step returns x_0, as ours), its other defaults (DPM-Solver's
``lower_order_final``, ``final_sigmas_type="zero"``). No clipping or thresholding anywhere by default
(``clip_denoised=False``), so only the solvers differ; ``--clip`` clips x_0 to [-1, 1] on the digits model
(the shipped samplers' setting) in ours and in diffusers' DDIM and Heun (``clip_sample``) and DPM-Solver
(dynamic thresholding with ``sample_max_value=1``: the same clip); Euler cannot clip. The ancestral
sampler is stochastic and left out (its match with ``DDPMScheduler`` is
``benchmarks/sampler_vs_diffusers.py``).

Two models:

* ``oracle``: the exact eps of a Gaussian mixture (:class:`ddpm.testing.oracle.ClassConditionalOracle`
  without labels: K components N(m_k, diag(s_k^2)) on 1x8x8, m ~ U(-0.5, 0.5), s log-uniform in
  [0.05, 0.5]), for each schedule of ``--oracle-schedules``. Metric ``ode_rms`` (as
  ``benchmarks/sampler_error.py``): RMS over images and pixels of (sample - exact solution of the
  probability-flow ODE from the same x_T at t = T-1 down to sigma_0, then D(x; sigma_0)), the exact
  solution by RK4 in log sigma on the mixture's exact eps (``ref_steps`` steps; ``ref_error`` = its change
  from half as many). Fractional timesteps (Euler, Heun) get sigma interpolated linearly in t, as
  diffusers interpolates its sigmas, and abar = 1 / (1 + sigma^2).
* ``digits``: the quickstart model (``--ckpt``, EMA weights) on ``--images`` images: the digits score and
  the Fréchet distance to the training digits (:func:`ddpm.digits_score.digits_score`, samples clamped to
  [-1, 1]); ``noise_check`` is ours DPM-Solver++(2M) at the largest budget from a second x_T, the spread
  one draw of noise gives.

``verdict`` lists, per model, method and budget, where ours is worse than a diffusers row of its method.

    python benchmarks/quality_per_call.py                       # table; the newest quickstart checkpoint
    python benchmarks/quality_per_call.py --ckpt PATH --out results.json
    python benchmarks/quality_per_call.py --clip --oracle-schedules     # the digits model, clipped
"""

from __future__ import annotations

import argparse
import functools
import itertools
import json
import math
import platform
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

sys.path.insert(0, str(Path(__file__).resolve().parent))  # the diffusers loop of the speed benchmark

from sampler_vs_diffusers import diffusers_loop

from ddpm.diffusion import GaussianDiffusion
from ddpm.sampling import make_sampler
from ddpm.testing.oracle import ClassConditionalOracle

BUDGETS = (10, 20, 50)
DEFAULT_CKPT = "logs/quickstart/runs/latest/checkpoints/last.ckpt"
Runner = Callable[[Any, Tensor], Tensor]  # (model, x_T) -> x_0
Factory = Callable[[GaussianDiffusion, int], Runner]  # (diffusion, budget) -> runner


def heun_levels(budget: int) -> int:
    """N sigma levels of Heun within ``budget`` calls: 2N - 1 <= budget."""
    return (budget + 1) // 2


def ours(name: str, clip: bool = False, **settings: Any) -> Factory:
    """Our sampler ``name`` with its yaml defaults (or ``settings``), x_0 clipped to [-1, 1] or not,
    decoding x_T from the top of its chain."""

    def build(diffusion: GaussianDiffusion, budget: int) -> Runner:
        steps = heun_levels(budget) if name == "heun" else budget
        sampler = make_sampler(name, diffusion, steps=steps, clip_denoised=clip, **settings)
        return lambda model, x_top: sampler.sample_from(model, x_top.clone(), sampler.timesteps[-1])

    return build


# x_0 clipped to [-1, 1] as ours: DPM-Solver's dynamic thresholding with sample_max_value 1 is that clip
# (its threshold max(1, quantile) is clamped to 1); Euler cannot clip
CLIP = {"DDIMScheduler": {"clip_sample": True}, "HeunDiscreteScheduler": {"clip_sample": True},
        "DPMSolverMultistepScheduler": {"thresholding": True, "sample_max_value": 1.0}}  # fmt: skip
NO_CLIP = {"DDIMScheduler": {"clip_sample": False}}  # DDIM clips by default


def theirs(scheduler: str, clip: bool = False, **config: Any) -> Factory:
    """diffusers' ``scheduler`` configured to the diffusion (see the module docstring) plus ``config``."""
    config = {**(CLIP if clip else NO_CLIP).get(scheduler, {}), **config}

    def build(diffusion: GaussianDiffusion, budget: int) -> Runner:
        import diffusers

        steps = heun_levels(budget) if scheduler == "HeunDiscreteScheduler" else budget
        instance = getattr(diffusers, scheduler)(
            num_train_timesteps=diffusion.num_timesteps,
            trained_betas=diffusion.betas.detach().cpu().double().tolist(),
            prediction_type="epsilon",
            **config,
        )
        return lambda model, x_top: diffusers_loop(instance, model, x_top, steps)

    return build


def methods(clip: bool = False) -> dict[str, dict[str, Factory]]:
    """method -> {row name -> factory}: first ours as shipped, then diffusers' rows, then ours with the
    setting that diffusers' row uses (to tell the spacing from the solver); all clipping x_0 or none."""
    ddim = {"set_alpha_to_one": True}
    ours_, theirs_ = functools.partial(ours, clip=clip), functools.partial(theirs, clip=clip)
    return {
        "DDIM / Euler": {
            "ours ddim (uniform)": ours_("ddim"),
            "diffusers DDIM (linspace)": theirs_("DDIMScheduler", timestep_spacing="linspace", **ddim),
            "diffusers DDIM (leading, default)": theirs_("DDIMScheduler", **ddim),
            "diffusers Euler (linspace, default)": theirs_("EulerDiscreteScheduler"),
            "ours ddim (leading)": ours_("ddim", spacing="leading"),
        },
        "DPM-Solver++(2M)": {
            "ours dpm_solver_pp_2m (logsnr)": ours_("dpm_solver_pp_2m"),
            "diffusers DPMSolverMultistep (lu_lambdas)": theirs_(
                "DPMSolverMultistepScheduler", use_lu_lambdas=True
            ),
            "diffusers DPMSolverMultistep (linspace, default)": theirs_("DPMSolverMultistepScheduler"),
            "ours dpm_solver_pp_2m (uniform)": ours_("dpm_solver_pp_2m", spacing="uniform"),
        },
        "DPM-Solver++(3M)": {
            "ours dpm_solver_pp_3m (logsnr)": ours_("dpm_solver_pp_3m"),
            "diffusers DPMSolverMultistep order 3 (lu_lambdas)": theirs_(
                "DPMSolverMultistepScheduler", solver_order=3, use_lu_lambdas=True
            ),
            "diffusers DPMSolverMultistep order 3 (linspace, default)": theirs_(
                "DPMSolverMultistepScheduler", solver_order=3
            ),
            "ours dpm_solver_pp_3m (uniform)": ours_("dpm_solver_pp_3m", spacing="uniform"),
        },
        "Heun": {
            "ours heun (karras 0.002..80)": ours_("heun"),
            "diffusers Heun (karras)": theirs_("HeunDiscreteScheduler", use_karras_sigmas=True),
            "diffusers Heun (linspace, default)": theirs_("HeunDiscreteScheduler"),
            "ours heun (karras, the model's sigma range)": ours_("heun", sigma_min=None, sigma_max=None),
        },
    }


class Counting:
    """The model, counting its evaluations (the network calls of a run)."""

    def __init__(self, model: Any) -> None:
        self.model = model
        self.calls = 0

    def __call__(self, x: Tensor, t: Tensor, **cond: Any) -> Tensor:
        self.calls += 1
        return self.model(x, t, **cond)


def run_rows(diffusion: GaussianDiffusion, model: Any, x_top: Tensor, budgets, metric, clip=False) -> dict:
    """{method: {row: {budget: {"nfe": calls, **metric(x_0)}}}} for every row of :func:`methods`."""
    results: dict[str, dict[str, dict[str, dict]]] = {}
    for method, rows in methods(clip).items():
        results[method] = {}
        for name, factory in rows.items():
            results[method][name] = {}
            for budget in budgets:
                counted = Counting(model)
                try:
                    with torch.no_grad():
                        cell = metric(factory(diffusion, budget)(counted, x_top))
                except (IndexError, ValueError, RuntimeError) as exc:  # diffusers' own failures, reported
                    cell = {"error": f"{type(exc).__name__}: {exc}"}
                results[method][name][str(budget)] = {"nfe": counted.calls, **cell}
                print(f"{name:58s} {budget:3d} calls done", file=sys.stderr)
    return results


# ----------------------------------------------------------------------------- the oracle
class MixtureOracle:
    """The exact eps of ``oracle``'s mixture at any timestep, fractional ones included (module docstring)."""

    def __init__(self, oracle: ClassConditionalOracle) -> None:
        self.oracle = oracle
        self.sigmas = oracle.diffusion.sigmas.detach().cpu().double()

    def sigma(self, t: Tensor) -> Tensor:
        """sigma_t interpolated linearly between the grid's (exact at integer t)."""
        t = t.detach().cpu().double()
        low = t.floor().clamp(0, len(self.sigmas) - 2)
        w = t - low
        return (1 - w) * self.sigmas[low.long()] + w * self.sigmas[low.long() + 1]

    def eps_edm(self, x_edm: Tensor, sigma: Tensor) -> Tensor:
        """eps at x_edm = x_t / sqrt(abar) (abar = 1 / (1 + sigma^2)); ``sigma`` [B] or a scalar."""
        s = sigma.double().reshape(-1, 1, 1, 1).expand(x_edm.shape[0], 1, 1, 1)
        abar = 1 / (1 + s**2)
        return self.oracle.mixture_eps(x_edm.double() * abar.sqrt(), abar)

    def __call__(self, x_t: Tensor, t: Tensor, **cond: Any) -> Tensor:
        sigma = self.sigma(t.expand(x_t.shape[0]))
        s = sigma.view(-1, 1, 1, 1)
        return self.eps_edm(x_t.double() * (1 + s**2).sqrt(), sigma).to(x_t.dtype)


def exact_ode_x0(model: MixtureOracle, x_top: Tensor, steps: int) -> Tensor:
    """The probability-flow ODE dx/dsigma = eps(x, sigma) (x = x_t / sqrt(abar)) from x_T at t = T-1 down
    to sigma_0 by RK4 in u = log sigma (dx/du = sigma eps), then x_0 = D(x; sigma_0) = x - sigma_0 eps."""
    s_top, s_0 = float(model.sigmas[-1]), float(model.sigmas[0])
    x = x_top.double() * math.sqrt(1 + s_top**2)
    us = torch.linspace(math.log(s_top), math.log(s_0), steps + 1, dtype=torch.float64)

    def f(u: Tensor, x: Tensor) -> Tensor:
        return u.exp() * model.eps_edm(x, u.exp())

    for u, u_next in itertools.pairwise(us):
        h = u_next - u
        k1 = f(u, x)
        k2 = f(u + h / 2, x + h / 2 * k1)
        k3 = f(u + h / 2, x + h / 2 * k2)
        k4 = f(u_next, x + h * k3)
        x = x + h / 6 * (k1 + 2 * k2 + 2 * k3 + k4)
    return x - s_0 * model.eps_edm(x, torch.tensor(s_0))


def make_mixture(diffusion: GaussianDiffusion, components: int, seed: int) -> ClassConditionalOracle:
    g = torch.Generator().manual_seed(seed)
    shape = (components, 1, 8, 8)
    means = torch.rand(shape, generator=g, dtype=torch.float64) - 0.5
    log_std = torch.empty(shape, dtype=torch.float64).uniform_(math.log(0.05), math.log(0.5), generator=g)
    return ClassConditionalOracle(diffusion, means, log_std.exp())


def oracle_report(schedule: str, args: argparse.Namespace) -> dict:
    """The ``ode_rms`` of every row on the mixture oracle under ``schedule`` (T = 1000)."""
    diffusion = GaussianDiffusion(schedule=schedule)
    model = MixtureOracle(make_mixture(diffusion, args.components, args.seed))
    g = torch.Generator().manual_seed(args.seed + 1)
    x_top = torch.randn((args.oracle_images, 1, 8, 8), generator=g, dtype=torch.float64)
    reference = exact_ode_x0(model, x_top, args.ref_steps)
    coarse = exact_ode_x0(model, x_top, args.ref_steps // 2)

    def metric(out: Tensor) -> dict[str, float]:
        return {"ode_rms": float(((out.double() - reference) ** 2).mean().sqrt())}

    return {
        "setup": {
            "schedule": f"{schedule}, T=1000",
            "components": args.components,
            "images": args.oracle_images,
            "ref_steps": args.ref_steps,
            "ref_error": metric(coarse)["ode_rms"],
        },
        "results": run_rows(diffusion, model, x_top, args.budgets, metric),
    }


# ----------------------------------------------------------------------------- the digits model
def digits_report(args: argparse.Namespace) -> dict:
    """Digits score and Fréchet distance of every row on the quickstart checkpoint."""
    from ddpm.digits_score import digits_score, held_out_digits
    from ddpm.weights import load_model

    loaded = load_model(args.ckpt)
    net = loaded.net.eval()

    def metric(out: Tensor) -> dict[str, float]:
        score = digits_score(out.float().clamp(-1, 1))
        return {"score": score.score, "frechet": score.frechet}

    def x_top(seed: int) -> Tensor:
        return torch.randn((args.images, *loaded.image_shape), generator=torch.Generator().manual_seed(seed))

    results = run_rows(loaded.diffusion, net, x_top(args.seed), args.budgets, metric, args.clip)
    check = ours("dpm_solver_pp_2m", clip=args.clip)(loaded.diffusion, max(args.budgets))
    with torch.no_grad():
        other = metric(check(net, x_top(args.seed + 1)))
    held_out = digits_score(held_out_digits())
    return {
        "setup": {
            "ckpt": str(args.ckpt),
            "images": args.images,
            "schedule": "the checkpoint's",
            "clip_x0": args.clip,
            "held_out_digits": {
                "images": held_out.num_images,
                "score": held_out.score,
                "frechet": held_out.frechet,
            },
        },
        "noise_check": {
            "row": f"ours dpm_solver_pp_2m, {max(args.budgets)} calls, x_T seed {args.seed + 1}",
            **other,
        },
        "results": results,
    }


# ----------------------------------------------------------------------------- verdict, table, main
BETTER = {"ode_rms": min, "frechet": min, "score": max}


def verdict(model: str, results: dict) -> list[str]:
    """Where ours as shipped (the first row of a method) is worse than a diffusers row of that method."""
    worse = []
    for rows in results.values():
        (mine, own), *others = rows.items()
        for budget, cell in own.items():
            for metric, better in BETTER.items():
                if metric not in cell:
                    continue
                for name, row in others:  # diffusers' rows that ran (a failed one has only "error")
                    if not name.startswith("diffusers") or metric not in row[budget]:
                        continue
                    theirs_value = row[budget][metric]
                    if better(cell[metric], theirs_value) != cell[metric]:
                        worse.append(f"{model}: {metric} at {budget} calls: {mine} {cell[metric]:.4g} "
                                     f"vs {name} {theirs_value:.4g}")  # fmt: skip
    return worse


def print_table(title: str, results: dict, metrics: tuple[str, ...]) -> None:
    budgets = list(next(iter(next(iter(results.values())).values())))
    print(f"\n{title}\n")
    print("| method | sampler | " + " | ".join(f"{b} calls" for b in budgets) + " |")
    print("|---|---|" + "---|" * len(budgets))
    for method, rows in results.items():
        for name, cells in rows.items():
            shown = [
                f"fails ({c['error'].split(':')[0]})" if "error" in c
                else f"{c['nfe']}: " + " / ".join(f"{c[m]:.3g}" for m in metrics)
                for c in cells.values()
            ]  # fmt: skip
            print(f"| {method} | {name} | " + " | ".join(shown) + " |")


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--budgets", type=int, nargs="+", default=list(BUDGETS), help="network calls")
    parser.add_argument("--ckpt", default=DEFAULT_CKPT, help="the quickstart checkpoint ('none': skip)")
    parser.add_argument("--images", type=int, default=500, help="digits model: images per row")
    parser.add_argument(
        "--clip", action="store_true", help="digits model: clip x_0 to [-1, 1] (Euler cannot)"
    )
    parser.add_argument("--oracle-schedules", nargs="*", default=["cosine", "linear"])
    parser.add_argument("--oracle-images", type=int, default=512)
    parser.add_argument("--components", type=int, default=10, help="mixture components of the oracle")
    parser.add_argument("--ref-steps", type=int, default=500, help="RK4 steps of the exact ODE solution")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=torch.get_num_threads())
    parser.add_argument("--out", help="write the results as JSON to this file")
    parser.add_argument("--json", action="store_true", help="print JSON instead of the tables")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> dict:
    args = parse_args(argv)
    if args.ckpt != "none" and not Path(args.ckpt).exists():
        fix = "train the quickstart (ddpm-train experiment=quickstart) or pass --ckpt PATH (none: skip it)"
        print(f"error: no checkpoint {args.ckpt}: {fix}", file=sys.stderr)
        sys.exit(2)
    torch.set_num_threads(args.threads)
    start = time.perf_counter()
    models = {f"oracle {s}": oracle_report(s, args) for s in args.oracle_schedules}
    if args.ckpt != "none":
        models["digits"] = digits_report(args)
    report = {
        "benchmark": "quality_per_call",
        "budgets": args.budgets,
        "models": models,
        "verdict": [line for name, m in models.items() for line in verdict(name, m["results"])],
        "machine": {
            "python": platform.python_version(),
            "torch": torch.__version__,
            "diffusers": __import__("diffusers").__version__,
            "threads": args.threads,
            "wall_s": round(time.perf_counter() - start, 1),
        },
    }
    if args.out:
        Path(args.out).write_text(json.dumps(report, indent=2))
    if args.json:
        print(json.dumps(report, indent=2))
    else:
        for name, m in models.items():
            metrics = ("ode_rms",) if name.startswith("oracle") else ("score", "frechet")
            print_table(f"{name} {m['setup']}: calls: {' / '.join(metrics)}", m["results"], metrics)
        worse = report["verdict"] or ["nowhere"]
        print("\nwhere ours is worse:\n" + "\n".join(f"- {line}" for line in worse))
    return report


if __name__ == "__main__":
    main()
