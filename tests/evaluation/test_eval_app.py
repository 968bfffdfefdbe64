"""``ddpm-eval`` end to end: report, grid, shards; an interrupted run resumes to the identical report."""

import json
import os
import signal
import subprocess
import sys
import time

import pytest

from ddpm.cli.ddpm_eval import evaluate
from ddpm.io.shards import ShardStore
from tests.helpers import compose_train, run_cli

from .helpers import write_lightning_checkpoint


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    folder = tmp_path_factory.mktemp("ckpt")
    write_lightning_checkpoint(folder / "last.ckpt", folder)
    return folder / "last.ckpt"


def eval_overrides(checkpoint, inception_path, cache_dir, **extra):
    options = {
        "checkpoint": str(checkpoint),
        "device": "cpu",
        "progress": "false",
        "generation.num_samples": 6,
        "generation.shard_size": 2,
        "generation.batch_size": 3,
        "generation.grid_size": 4,
        "metrics.inception_weights": str(inception_path),
        "metrics.allow_download": "false",
        "metrics.num_reference_images": 3,
        "metrics.batch_size": 8,
        "metrics.cache_dir": str(cache_dir),
        "metrics.nll.enabled": "true",
        "metrics.nll.num_images": 3,
        "metrics.nll.shard_size": 2,
        "metrics.nll.batch_size": 2,
    }
    options.update(extra)
    return [f"{k}={v}" for k, v in options.items()]


def run_eval(overrides, out_dir):
    return evaluate(compose_train(overrides, out_dir, config_name="eval"))


class Killed(Exception):
    pass


def test_interrupted_evaluation_resumes_to_the_identical_report(
    tmp_path, checkpoint, inception_path, monkeypatch
):
    overrides = eval_overrides(checkpoint, inception_path, tmp_path / "cache")
    full = run_eval(overrides, tmp_path / "uninterrupted")

    # Killed after the first shard: no report, one finished shard, no partial file.
    original_write = ShardStore.write
    calls = []

    def write_then_die(self, shard, images):
        if calls:
            raise Killed
        calls.append(shard)
        return original_write(self, shard, images)

    monkeypatch.setattr(ShardStore, "write", write_then_die)
    with pytest.raises(Killed):
        run_eval(overrides, tmp_path / "interrupted")
    monkeypatch.setattr(ShardStore, "write", original_write)
    out = tmp_path / "interrupted"
    assert not (out / "report.json").exists()
    assert sorted(p.name for p in (out / "samples").iterdir()) == ["samples_00000.npz"]

    resumed = run_eval(overrides, out)  # the same command, same directory
    assert resumed == full
    assert (out / "report.json").read_bytes() == (tmp_path / "uninterrupted" / "report.json").read_bytes()

    report = json.loads((out / "report.json").read_text())
    metrics = report["metrics"]
    assert set(metrics) == {
        "fid_6_train",
        "fid_6_test",
        "is_6_1split",
        "nll_bpd_test",
    }  # 10 splits need >= 10
    assert all(isinstance(v, float) and v == v for v in metrics.values())
    assert report["protocol"]["weights"] == "ema" and report["protocol"]["num_samples"] == 6
    assert (
        report["protocol"]["sampler"]["num_steps"] == 10
        and report["protocol"]["inception"]["official"] is False
    )
    nll = report["nll"]
    assert len(nll["terms_bpd"]) == 10 and nll["num_images"] == 3
    assert nll["bpd"] == pytest.approx(nll["prior_bpd"] + sum(nll["terms_bpd"]))
    assert (out / "samples.png").is_file() and len(list((out / "samples").glob("*.npz"))) == 3
    info = json.loads((out / "run_info.json").read_text())
    assert info["reference_cache_hits"] == {"train": True, "test": True}  # computed once, by the first run


def test_check_inception_mode(tmp_path, inception_path):
    overrides = [
        "mode=check_inception",
        "data=digits",
        "device=cpu",
        "progress=false",
        f"metrics.inception_weights={inception_path}",
        "metrics.num_reference_images=4",
        f"metrics.cache_dir={tmp_path / 'cache'}",
    ]
    report = run_eval(overrides, tmp_path / "out")
    saved = json.loads((tmp_path / "out" / "inception_check.json").read_text())
    assert saved["metrics"] == pytest.approx(report["metrics"])
    assert saved["num_images"] == {"train": 4, "test": 4}
    assert saved["metrics"]["fid_train_vs_test"] > 0 and saved["passed"] is None  # not CIFAR-10, not official
    assert set(saved["expected"]) == set()


def test_cli_errors_are_one_line(tmp_path, checkpoint):
    env = {"OMP_NUM_THREADS": "1", "TORCH_HOME": str(tmp_path / "torch_home"), "DDPM_INCEPTION_WEIGHTS": ""}
    result = run_cli(
        [
            "ddpm-eval",
            f"checkpoint={checkpoint}",
            "metrics.allow_download=false",
            f"hydra.run.dir={tmp_path / 'a'}",
        ],
        cwd=tmp_path,
        env=env,
        timeout=240,
    )
    assert result.returncode == 2, result.stderr[-2000:]
    error = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    assert len(error) == 1 and "pt_inception-2015-12-05-6726825d.pth" in error[0]
    assert str(tmp_path / "torch_home" / "hub" / "checkpoints") in error[0]
    assert "Traceback" not in result.stderr
    assert not (tmp_path / "a" / "samples").exists()  # failed before sampling anything


@pytest.mark.slow
def test_sigkill_then_resume_gives_the_identical_report(tmp_path, checkpoint, inception_path):
    """A real kill -9 of the ddpm-eval process between shards, then the same command again."""
    args = [
        *eval_overrides(checkpoint, inception_path, tmp_path / "cache", **{"generation.num_samples": 24}),
        "metrics.nll.enabled=false",
    ]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1"}
    full = run_cli(
        ["ddpm-eval", *args, f"hydra.run.dir={tmp_path / 'full'}"], cwd=tmp_path, env=env, timeout=300
    )
    assert full.returncode == 0, full.stderr[-2000:]
    out = tmp_path / "killed"
    proc = subprocess.Popen(
        [sys.executable, "-m", "ddpm.cli.ddpm_eval", *args, f"hydra.run.dir={out}"],
        cwd=tmp_path,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    deadline = time.time() + 240
    while time.time() < deadline and len(list((out / "samples").glob("samples_*.npz"))) < 2:
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    done = len(list((out / "samples").glob("samples_*.npz")))
    assert 2 <= done < 12, done
    again = run_cli(["ddpm-eval", *args, f"hydra.run.dir={out}"], cwd=tmp_path, env=env, timeout=300)
    assert again.returncode == 0, again.stderr[-2000:]
    assert (out / "report.json").read_bytes() == (tmp_path / "full" / "report.json").read_bytes()
