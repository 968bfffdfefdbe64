"""Our ancestral and DDIM samplers give diffusers' DDPMScheduler / DDIMScheduler loops' images for the
same network, x_T and per-step noise (benchmarks/sampler_vs_diffusers.py's parity half)."""

import importlib.util

import pytest

from tests.helpers import REPO_ROOT


def load_benchmark():
    path = REPO_ROOT / "benchmarks" / "sampler_vs_diffusers.py"
    spec = importlib.util.spec_from_file_location("sampler_vs_diffusers", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.parametrize("sampler", ["ancestral", "ddim"])
def test_outputs_equal_diffusers_loops(sampler, capsys):
    bench = load_benchmark()
    args = [
        "--num-timesteps",
        "30",
        "--ddim-steps",
        "6",
        "--batch",
        "3",
        "--rounds",
        "0",
        "--samplers",
        sampler,
    ]
    result = bench.main([*args, "--threads", "1"])[sampler]
    assert result["network_calls"] == (30 if sampler == "ancestral" else 6)
    assert result["output_std"] > 0.3  # images, not a constant
    assert result["max_abs_diff"] < 1e-4  # float32 vs float64 schedules
    assert '"benchmark": "sampler_vs_diffusers"' in capsys.readouterr().out
