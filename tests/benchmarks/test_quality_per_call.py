"""benchmarks/quality_per_call.py at a tiny size (so it cannot rot), and its exact-ODE reference against the
closed form of a single Gaussian."""

import importlib.util
import sys

import torch

from ddpm.diffusion import GaussianDiffusion
from ddpm.testing import GaussianOracle
from tests.helpers import REPO_ROOT
from tests.sampling.conftest import tiny_checkpoint  # noqa: F401 (the fixture)
from tests.sampling.test_heun import probability_flow_x0


def load_benchmark():
    path = REPO_ROOT / "benchmarks" / "quality_per_call.py"
    spec = importlib.util.spec_from_file_location("quality_per_call", path)
    module = importlib.util.module_from_spec(spec)
    sys.modules["quality_per_call"] = module
    spec.loader.exec_module(module)
    return module


def test_exact_ode_reference_matches_the_closed_form_of_one_gaussian():
    bench = load_benchmark()
    diffusion = GaussianDiffusion()  # linear, T = 1000: probability_flow_x0's schedule
    mixture = bench.make_mixture(diffusion, components=1, seed=0)
    model = bench.MixtureOracle(mixture)
    x_top = torch.randn((8, 1, 8, 8), generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    exact = probability_flow_x0(GaussianOracle(diffusion, mixture.means[0], mixture.stds[0]), x_top, 999)
    assert (bench.exact_ode_x0(model, x_top, steps=200) - exact).abs().max() < 1e-5
    t = torch.tensor([0, 17, 999])  # the interpolated oracle is the oracle on the grid
    assert torch.allclose(model(x_top[:3], t), mixture(x_top[:3], t), atol=1e-12)


def test_tiny_run_counts_calls_and_scores_every_row(tiny_checkpoint, capsys):  # noqa: F811
    bench = load_benchmark()
    args = ["--budgets", "6", "--oracle-schedules", "linear", "--oracle-images", "4", "--ref-steps", "40"]
    report = bench.main([*args, "--ckpt", str(tiny_checkpoint), "--images", "6", "--threads", "1"])
    oracle, digits = report["models"]["oracle linear"]["results"], report["models"]["digits"]["results"]
    assert set(oracle) == set(digits) == {"DDIM / Euler", "DPM-Solver++(2M)", "DPM-Solver++(3M)", "Heun"}
    for method, rows in oracle.items():
        assert next(iter(rows)).startswith("ours"), method
        for name, cells in rows.items():
            assert cells["6"]["nfe"] == (5 if method == "Heun" else 6), name  # Heun: 3 levels, 2 * 3 - 1
            assert cells["6"]["ode_rms"] > 0, name
            assert {"score", "frechet"} <= set(digits[method][name]["6"]), name
    ddim = oracle["DDIM / Euler"]
    # DDIM (eta 0) is Euler's method on the same ODE: ours on rounded timesteps, diffusers' on fractional ones
    euler = ddim["diffusers Euler (linspace, default)"]["6"]["ode_rms"]
    assert abs(ddim["ours ddim (uniform)"]["6"]["ode_rms"] / euler - 1) < 0.02
    assert "| DPM-Solver++(2M) | ours dpm_solver_pp_2m (logsnr) | 6: " in capsys.readouterr().out


def test_clipped_digits_rows_match_where_the_chains_are_the_same(tiny_checkpoint):  # noqa: F811
    bench = load_benchmark()
    args = ["--budgets", "5", "--oracle-schedules", "--clip", "--images", "6", "--threads", "1"]
    digits = bench.main([*args, "--ckpt", str(tiny_checkpoint), "--json"])["models"]["digits"]
    assert digits["setup"]["clip_x0"] is True
    ddim = digits["results"]["DDIM / Euler"]  # leading: diffusers' DDIM and ours visit the same chain
    ours, theirs = ddim["ours ddim (leading)"]["5"], ddim["diffusers DDIM (leading, default)"]["5"]
    assert abs(ours["frechet"] - theirs["frechet"]) < 1e-3 * theirs["frechet"]
