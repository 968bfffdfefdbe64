"""Sampler quality vs number of steps on the oracle Gaussian (exact eps-predictor, no training).

Data: x_0 ~ N(m, diag(s^2)) on 1x8x8 "images", m ~ U(-0.5, 0.5), s log-uniform in [0.05, 0.5]
(small s = the stiff, nearly deterministic directions of real data; below s ~ 0.05 every sampler's error
is dominated by the last step, which returns E[x_0 | x_1] and so loses a fraction (1 - abar_1) / s^2 of the
variance: a property of the discrete model, not of the sampler). The exact denoiser is
eps*(x_t, t) = sqrt(1 - abar_t) (x_t - sqrt(abar_t) m) / (abar_t s^2 + 1 - abar_t); T = 1000 linear betas.
No clipping. For each sampler and step count:

* exact moments of the sampler's output distribution (it is Gaussian: every sampler is affine in its noise
  here), computed without Monte-Carlo error (:func:`ddpm.testing.oracle.exact_moments`): the mean error
  (RMS over dimensions, in units of s), the largest relative variance error |var / s^2 - 1|, and the
  Frechet distance to the data Gaussian ``fd_exact`` (the sampler's own error, infinite samples);
* ``fd_at_n``: the expected Frechet distance of an n-sample estimate (n = 50k, the FID protocol):
  fd_exact + 1.5 sum_j var_j / n (the sampling-noise floor), a noise-free version of what a metric sees;
* a Monte-Carlo run with ``--mc-samples`` images: its Frechet distance and wall time (ms per network call;
  with a real network the time is proportional to the number of calls, i.e. the steps).

"Within 10% of 1000-step ancestral" = fd_at_n <= 1.1 x that of ancestral sampling (fixed-large, the paper's
CIFAR-10 sampler) with all 1000 steps; the stricter fd_exact criterion is reported too.

    python benchmarks/sampler_quality.py                        # table
    python benchmarks/sampler_quality.py --out results.json     # + machine-readable JSON
"""

from __future__ import annotations

import argparse
import json
import math
import platform
import sys
import time
from collections.abc import Callable

import torch

from ddpm.diffusion import GaussianDiffusion
from ddpm.sampling import AncestralSampler, DDIMSampler, DPMSolverPPSampler
from ddpm.testing import BatchNoise, GaussianOracle, exact_moments, sample_moments

STEPS = (10, 20, 50, 100, 1000)


def samplers(linear: GaussianDiffusion, small: GaussianDiffusion) -> dict[str, Callable[[int], object]]:
    return {
        "ancestral (fixed-large)": lambda n: AncestralSampler(linear, clip_denoised=False, steps=n),
        "ancestral (fixed-small)": lambda n: AncestralSampler(small, clip_denoised=False, steps=n),
        "ddim eta=0 uniform": lambda n: DDIMSampler(linear, steps=n, clip_denoised=False),
        "ddim eta=0 quadratic": lambda n: DDIMSampler(
            linear, steps=n, spacing="quadratic", clip_denoised=False
        ),
        "ddim eta=1 uniform": lambda n: DDIMSampler(linear, steps=n, eta=1.0, clip_denoised=False),
        "dpm-solver++ 2M logsnr": lambda n: DPMSolverPPSampler(linear, steps=n, clip_denoised=False),
        "dpm-solver++ 2M time-uniform": lambda n: DPMSolverPPSampler(
            linear, steps=n, spacing="uniform", clip_denoised=False
        ),
        "dpm-solver++ 3M logsnr": lambda n: DPMSolverPPSampler(linear, steps=n, order=3, clip_denoised=False),
    }


def make_oracle(
    diffusion: GaussianDiffusion, shape, std_min: float, std_max: float, seed: int
) -> GaussianOracle:
    g = torch.Generator().manual_seed(seed)
    dims = math.prod(shape)
    mean = (torch.rand(dims, generator=g, dtype=torch.float64) - 0.5).view(shape)
    log_std = torch.empty(dims, dtype=torch.float64).uniform_(
        math.log(std_min), math.log(std_max), generator=g
    )
    return GaussianOracle(diffusion, mean, log_std.exp().view(shape))


def evaluate(sampler, oracle: GaussianOracle, n_fd: int, n_mc: int, seed: int) -> dict[str, float]:
    mean, var = exact_moments(sampler, oracle)
    fd_exact = oracle.frechet_distance(mean, var)
    row = {
        "nfe": sampler.num_steps,
        "mean_err_rms_over_std": float((((mean - oracle.mean) / oracle.std) ** 2).mean().sqrt()),
        "var_rel_err_max": float((var / oracle.std**2 - 1).abs().max()),
        "fd_exact": fd_exact,
        "fd_at_n": fd_exact + 1.5 * float(var.sum()) / n_fd,
    }
    if n_mc:
        noise = BatchNoise(n_mc, torch.Generator().manual_seed(seed))
        start = time.perf_counter()
        samples = sampler.sample(oracle, oracle.shape, noise, "cpu")
        wall = time.perf_counter() - start
        row["fd_mc"] = oracle.frechet_distance(*sample_moments(samples))
        row["wall_s"] = wall
        row["ms_per_nfe"] = 1000 * wall / sampler.num_steps
    return row


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--steps", type=int, nargs="+", default=list(STEPS))
    parser.add_argument("--shape", type=int, nargs=3, default=[1, 8, 8])
    parser.add_argument("--std-min", type=float, default=0.05)
    parser.add_argument("--std-max", type=float, default=0.5)
    parser.add_argument("--n-fd", type=int, default=50000, help="sample count n of fd_at_n (FID uses 50k)")
    parser.add_argument("--mc-samples", type=int, default=10000, help="Monte-Carlo samples per run (0: skip)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--out", help="write the results as JSON to this file")
    parser.add_argument("--json", action="store_true", help="print JSON instead of the table")
    return parser.parse_args(argv)


def smallest_steps_within_10pct(results: dict, reference: dict) -> dict[str, dict[str, int | None]]:
    """Per sampler: the smallest step count from which on every larger one is within 10% of the reference."""
    summary = {}
    for name, rows in results.items():

        def first(metric: str, rows=rows) -> int | None:
            ok = [int(s) for s, r in rows.items() if r[metric] <= 1.1 * reference[metric]]
            for s in sorted(int(k) for k in rows):
                if all(t in ok for t in sorted(int(k) for k in rows) if t >= s):
                    return s
            return None

        summary[name] = {"fd_at_n": first("fd_at_n"), "fd_exact": first("fd_exact")}
    return summary


def main(argv: list[str] | None = None) -> dict:
    args = parse_args(argv)
    torch.set_num_threads(args.threads)

    linear = GaussianDiffusion()
    small = GaussianDiffusion(var_type="fixed_small")
    oracle = make_oracle(linear, tuple(args.shape), args.std_min, args.std_max, args.seed)
    results: dict[str, dict[str, dict[str, float]]] = {}
    for name, factory in samplers(linear, small).items():
        results[name] = {}
        for steps in args.steps:
            results[name][str(steps)] = evaluate(
                factory(steps), oracle, args.n_fd, args.mc_samples, args.seed
            )
            print(f"{name:30s} {steps:5d} done", file=sys.stderr)

    ref_key = str(max(args.steps))
    reference = results["ancestral (fixed-large)"][ref_key]
    report = {
        "benchmark": "sampler_quality",
        "oracle": {
            "shape": list(args.shape),
            "std_range": [args.std_min, args.std_max],
            "mean_range": [-0.5, 0.5],
            "schedule": "linear 1e-4..0.02, T=1000",
            "clip_denoised": False,
            "sum_var": float((oracle.std**2).sum()),
        },
        "n_fd": args.n_fd,
        "mc_samples": args.mc_samples,
        "reference": {"sampler": "ancestral (fixed-large)", "steps": int(ref_key), **reference},
        "smallest_steps_within_10pct_of_reference": smallest_steps_within_10pct(results, reference),
        "results": results,
        "machine": {"python": platform.python_version(), "torch": torch.__version__, "threads": args.threads},
    }
    if args.out:
        with open(args.out, "w") as f:
            json.dump(report, f, indent=2)
    if args.json:
        print(json.dumps(report, indent=2))
    else:
        print_table(report)
    return report


def print_table(report: dict) -> None:
    steps = list(next(iter(report["results"].values())).keys())
    print(f"Frechet distance to the data Gaussian, expected at n={report['n_fd']} samples (fd_at_n) / exact")
    print("| sampler | " + " | ".join(f"{s} steps" for s in steps) + " | within 10%: n / exact |")
    print("|---|" + "---|" * (len(steps) + 1))
    for name, rows in report["results"].items():
        cells = [f"{rows[s]['fd_at_n']:.2e} / {rows[s]['fd_exact']:.1e}" for s in steps]
        first = report["smallest_steps_within_10pct_of_reference"][name]
        print(f"| {name} | " + " | ".join(cells) + f" | {first['fd_at_n']} / {first['fd_exact']} |")
    print()
    print(
        "max |var/s^2 - 1| (exact), mean error RMS in units of s (exact), ms per network call (Monte Carlo)"
    )
    print("| sampler | " + " | ".join(f"{s} steps" for s in steps) + " |")
    print("|---|" + "---|" * len(steps))
    for name, rows in report["results"].items():
        cells = [
            f"{rows[s]['var_rel_err_max']:.3f}, {rows[s]['mean_err_rms_over_std']:.3f}, "
            f"{rows[s].get('ms_per_nfe', float('nan')):.2f}"
            for s in steps
        ]
        print(f"| {name} | " + " | ".join(cells) + " |")


if __name__ == "__main__":
    main()
