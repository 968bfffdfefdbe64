"""``ddpm-eval`` end to end: report, grid, shards; an interrupted run resumes to the identical report."""

import json
import os
import signal
import statistics
import subprocess
import sys
import time

import numpy as np
import pytest
import torch

from ddpm.cli.ddpm_eval import evaluate
from ddpm.errors import ConfigError
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
        "ckpt_path": str(checkpoint),
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


@pytest.mark.slow
def test_compiled_generation_gives_the_same_report(tmp_path, checkpoint, inception_path):
    overrides = eval_overrides(
        checkpoint, inception_path, tmp_path / "cache", **{"metrics.nll.enabled": "false"}
    )
    eager = run_eval(overrides, tmp_path / "eager")
    compiled = run_eval([*overrides, "compile=true"], tmp_path / "compiled")
    assert compiled["metrics"] == pytest.approx(eager["metrics"], rel=1e-3)


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
    # the T=10 test model's full ancestral chain is not the paper's 1000 steps: the names say so
    assert set(metrics) == {
        "fid_6_ancestral10_train",
        "fid_6_ancestral10_test",
        "is_6_ancestral10_1split",
        "nll_bpd_test",
        # a model of the digits: its digits score too (metrics.digits_score=auto)
        "digits_score_6_ancestral10",
        "digits_frechet_6_ancestral10",
        "digits_confidence_6_ancestral10",
    }  # 10 splits need >= 10
    assert report["expected"] == {}  # no paper number beside another protocol's
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
            f"ckpt_path={checkpoint}",
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


def stored_sample_features(run_dir):
    files = sorted((run_dir / "features").glob("features_*.npz"))
    return torch.cat([torch.from_numpy(np.load(f)["features"]) for f in files])


def test_kid_and_precision_recall_equal_torch_fidelity_on_the_same_features(
    tmp_path, checkpoint, inception_path
):
    from torch_fidelity.metric_kid import kid_features_to_metric
    from torch_fidelity.metric_prc import prc_features_to_metric

    from ddpm.metrics.reference_cache import FEATURES, ReferenceKey, load_cached

    extra = {"metrics.nll.enabled": "false", "metrics.num_reference_images": 4, "metrics.kid": "true"}
    extra.update({"metrics.precision_recall": "true", "metrics.pr_neighbours": 2, "metrics.kid_subsets": 7})
    report = run_eval(
        eval_overrides(checkpoint, inception_path, tmp_path / "cache", **extra), tmp_path / "out"
    )
    metrics, protocol = report["metrics"], report["protocol"]
    assert protocol["kid"]["subsets"] == 7
    # precision/recall name their feature space and the sizes of both sets (they depend on both)
    sizes = {"generated": 6, "real": 4}
    assert protocol["precision_recall"] == {
        "features": "inception_pool3",
        "k": 2,
        "sizes": {"train": sizes, "test": sizes},
    }
    # 6 samples and 4 reference images per split: subsets of m = 4, not the requested 1000, and it says so
    assert protocol["kid"]["subset_size"] == 4 and protocol["kid"]["subset_size_requested"] == 1000
    generated = stored_sample_features(tmp_path / "out")
    assert generated.shape == (6, 2048) and generated.dtype == torch.float32
    for split in ("train", "test"):
        key = ReferenceKey(**_key_of(tmp_path / "cache", split))
        real = load_cached(tmp_path / "cache" / key.features_filename(), FEATURES, key)
        kid = kid_features_to_metric(
            generated, real, kid_subsets=7, kid_subset_size=4, rng_seed=2020, verbose=False
        )
        prc = prc_features_to_metric(
            generated, real, prc_neighborhood=2, prc_batch_size=10000, save_cpu_ram=False, verbose=False
        )
        name = f"6_ancestral10_{split}"
        assert metrics[f"kid_{name}"] == pytest.approx(kid["kernel_inception_distance_mean"], rel=1e-4)
        assert metrics[f"kid_{name}_std"] == pytest.approx(kid["kernel_inception_distance_std"], rel=1e-3)
        assert metrics[f"precision_inception_{name}"] == pytest.approx(prc["precision"], abs=1e-6)
        assert metrics[f"recall_inception_{name}"] == pytest.approx(prc["recall"], abs=1e-6)
    info = json.loads((tmp_path / "out" / "run_info.json").read_text())
    assert info["reference_cache_hits"] == {"train": False, "test": False}
    again = run_eval(
        eval_overrides(checkpoint, inception_path, tmp_path / "cache", **extra), tmp_path / "out"
    )
    assert again == report  # samples, features and reference features all reused
    info = json.loads((tmp_path / "out" / "run_info.json").read_text())
    assert info["reference_cache_hits"] == {"train": True, "test": True}


def _key_of(cache_dir, split):
    """The key stored in the one cached statistics file of a split."""
    (path,) = [p for p in cache_dir.glob(f"*-{split}-*.pt") if not p.name.endswith("-features.pt")]
    key = torch.load(path, weights_only=True)["key"]
    return {**key, "image_shape": tuple(key["image_shape"]), "is_splits": tuple(key["is_splits"])}


# slow (37 s): test_interrupted_evaluation_resumes_to_the_identical_report covers resumption by default
@pytest.mark.slow
def test_seed_spread_over_three_draws_resumes_to_the_identical_report(
    tmp_path, checkpoint, inception_path, monkeypatch
):
    extra = {"generation.num_samples": 3, "metrics.nll.enabled": "false", "metrics.kid": "true"}
    extra.update({"metrics.num_reference_images": 2, "metrics.reference_splits": "[train]"})
    overrides = [*eval_overrides(checkpoint, inception_path, tmp_path / "cache", **extra), "num_draws=3"]
    full = run_eval(overrides, tmp_path / "full")
    draws = full["draws"]
    assert [d["seed"] for d in draws] == [0, 3, 6] and full["protocol"]["seeds"] == [0, 3, 6]
    assert len({d["fingerprint"] for d in draws}) == 3
    names = {"fid_3_ancestral10_train", "is_3_ancestral10_1split"}  # T=10: not the paper's 1000 steps
    names |= {"kid_3_ancestral10_train", "kid_3_ancestral10_train_std"}
    # a model of the digits also gets its digits score (metrics.digits_score=auto)
    names |= {f"digits_{kind}_3_ancestral10" for kind in ("score", "frechet", "confidence")}
    assert set(full["metrics"]) == set(full["metrics_std"]) == names
    for name in names:
        values = [d["metrics"][name] for d in draws]
        assert full["metrics"][name] == pytest.approx(statistics.mean(values), rel=1e-12)
        assert full["metrics_std"][name] == pytest.approx(statistics.stdev(values), rel=1e-9, abs=1e-15)
    assert len({d["metrics"]["fid_3_ancestral10_train"] for d in draws}) == 3  # three different sample sets
    assert (tmp_path / "full" / "draws" / "seed6" / "features" / "features_00001.npz").is_file()
    single = run_eval([*overrides[:-1], "seed=3"], tmp_path / "single")
    assert single["metrics"] == draws[1]["metrics"]  # draw 1 is exactly a one-draw evaluation at seed 3

    # killed in the Inception pass over draw 1 (6 sample shards and draw 0's 2 feature shards written)
    original_write, calls = ShardStore.write, []

    def write_then_die(self, shard, arrays):
        if len(calls) == 8:
            raise Killed
        calls.append(shard)
        return original_write(self, shard, arrays)

    monkeypatch.setattr(ShardStore, "write", write_then_die)
    with pytest.raises(Killed):
        run_eval(overrides, tmp_path / "killed")
    monkeypatch.setattr(ShardStore, "write", original_write)
    killed = tmp_path / "killed"
    assert not (killed / "report.json").exists() and len(list((killed / "features").glob("*.npz"))) == 2
    assert not (killed / "draws" / "seed3" / "features").exists()
    assert run_eval(overrides, killed) == full  # the same command again
    assert (killed / "report.json").read_bytes() == (tmp_path / "full" / "report.json").read_bytes()


def test_overlapping_seed_ranges_are_refused(tmp_path, checkpoint, inception_path):
    overrides = [*eval_overrides(checkpoint, inception_path, tmp_path / "cache"), "seeds=[0,3]"]
    with pytest.raises(ConfigError, match="overlap"):
        run_eval(overrides, tmp_path / "out")


def test_a_model_of_the_digits_gets_the_digits_score_beside_the_held_out_digits(tmp_path, checkpoint, capsys):
    """No Inception needed: FID and IS off, the digits score of the samples is what ddpm-eval computes
    (metrics.digits_score=auto: the checkpoint's data is the digits), with the held-out baseline."""
    overrides = [
        f"ckpt_path={checkpoint}",
        "device=cpu",
        "progress=false",
        "generation.num_samples=6",
        "generation.shard_size=3",
        "metrics.fid=false",
        "metrics.inception_score=false",
    ]
    report = run_eval(overrides, tmp_path / "out")
    names = {"digits_score_6_ancestral10", "digits_frechet_6_ancestral10", "digits_confidence_6_ancestral10"}
    assert set(report["metrics"]) == names
    baseline = report["reference"]["held_out_digits"]
    assert baseline["num_images"] == 6 and baseline["score"] > report["metrics"]["digits_score_6_ancestral10"]
    assert "held-out real digits (6)" in capsys.readouterr().out
    # the same command on a model of other data has nothing to compute: refused before any sampling
    other = tmp_path / "folder.ckpt"
    write_lightning_checkpoint(other, tmp_path / "other", ["data=image_folder", f"data.path={tmp_path}"])
    with pytest.raises(ConfigError, match="nothing to compute"):
        run_eval([f"ckpt_path={other}", *overrides[1:]], tmp_path / "refused")
    assert not list((tmp_path / "refused").rglob("samples_*.npz"))
