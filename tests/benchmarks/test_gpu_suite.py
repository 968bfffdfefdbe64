"""benchmarks/gpu_suite.py --smoke runs every row on the CPU, so the GPU run cannot fail on a typo."""

import json
import os
import subprocess
import sys

import pytest

from tests.helpers import REPO_ROOT


@pytest.mark.slow  # ~15 s of CPU (dynamo traces the U-Net twice); CI runs it with -m slow
def test_gpu_suite_smoke_runs_every_row_and_prints_json():
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    proc = subprocess.run(
        [sys.executable, str(REPO_ROOT / "benchmarks" / "gpu_suite.py"), "--smoke"],
        capture_output=True, text=True, timeout=300, env=env, cwd=REPO_ROOT,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-3000:]
    result = json.loads(proc.stdout)
    rows = [(r["precision"], r["compiled"]) for r in result["train"]]
    assert rows == [("fp32", False), ("tf32", False), ("bf16", False), ("bf16", True)]
    assert [(r["batch"], r["compiled"]) for r in result["sampling"]] == [(2, False), (2, True)]
    for row in result["train"] + result["sampling"]:
        assert "skipped" not in row, row
    assert all(r["images_per_s"] > 0 and r["hours_800k_steps"] > 0 for r in result["train"])
    assert all(r["calls_per_s"] > 0 and r["hours_50k_x_1000"] > 0 for r in result["sampling"])
    assert result["inception"]["images_per_s"] > 0
    assert abs(result["fid_drift"]["fid_tf32_vs_fp32"]) < 1e-6  # TF32 does not exist on the CPU
    assert set(result["summary"]) == {
        "train_speedup_bf16_compiled_vs_fp32_eager", "best_hours_800k_steps", "best_hours_50k_x_1000"
    }  # fmt: skip
