"""1 vs 2 DDP ranks (CPU, gloo, subprocesses): the same samples, FID / IS / KID / PR / NLL, no hang."""

import json
import subprocess
import sys
from pathlib import Path

import pytest

from tests.helpers import gloo_env, on_a_free_port

WORKER = Path(__file__).with_name("ddp_worker.py")


def run_plain(out: Path, inception_path: Path, world: int) -> dict:
    on_a_free_port(lambda port: _launch_plain(out, inception_path, world, port))
    return json.loads((out / "result.json").read_text())


def _launch_plain(out: Path, inception_path: Path, world: int, port: int) -> tuple[bool, str]:
    procs = []
    for rank in range(world):
        env = gloo_env(port, rank, world)
        procs.append(
            subprocess.Popen(
                [sys.executable, str(WORKER), "plain", str(out), str(inception_path)],
                env=env,
                stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT,
                text=True,
            )
        )
    outputs = [p.communicate(timeout=300)[0] for p in procs]
    return all(p.returncode == 0 for p in procs), "\n".join(o[-3000:] for o in outputs)


def test_one_and_two_ranks_agree(tmp_path, inception_path):
    from tests.evaluation.ddp_worker import plain

    (tmp_path / "world1").mkdir()
    plain(tmp_path / "world1", str(inception_path))  # one process, no process group: in this one
    one = json.loads((tmp_path / "world1" / "result.json").read_text())
    two = run_plain(tmp_path / "world2", inception_path, 2)
    assert (one["world"], two["world"]) == (1, 2)
    assert two["shards_sha256"] == one["shards_sha256"]  # identical samples, nothing skipped or doubled
    # Inception features are float32 and the ranks batch different images together: equal to ~1e-7
    assert two["fid"] == pytest.approx(one["fid"], rel=1e-6)
    assert two["is_2splits"] == pytest.approx(one["is_2splits"], rel=1e-6)
    assert two["is_1split"] == pytest.approx(one["is_1split"], rel=1e-6)
    assert two["reference_mean_norm"] == pytest.approx(one["reference_mean_norm"], rel=1e-6)
    assert two["nll_bpd"] == pytest.approx(one["nll_bpd"], rel=1e-9)
    assert two["nll_terms"] == pytest.approx(one["nll_terms"], rel=1e-9)
    assert one["fid"] > 0
    # KID / PR from gathered features and from ddpm-eval's feature shards (subsets, rows split over ranks)
    for name in ("kid", "kid_stored"):
        assert two[name] == pytest.approx(one[name], rel=1e-5), name
    for name in ("precision_recall", "precision_recall_stored"):
        assert two[name] == pytest.approx(one[name], abs=1e-9), name
    assert one["kid_stored"] == pytest.approx(one["kid"], rel=1e-5) and one["kid"][0] != 0
    assert one["precision_recall_stored"] == one["precision_recall"]
    # the second feature pass (VGG-16's): shards and cached reference features, the same on 2 ranks
    assert two["second_features"] == pytest.approx(one["second_features"], rel=1e-6, abs=1e-7)
    assert two["precision_recall_second"] == pytest.approx(one["precision_recall_second"], abs=1e-9)
    assert one["second_hits"] == two["second_hits"] == [False, True]
    assert two["fid_stored"] == pytest.approx(one["fid"], rel=1e-6)


# slow (30 s): test_one_and_two_ranks_agree covers the gathered features on 2 ranks by default
@pytest.mark.slow
def test_callbacks_under_lightning_ddp_match_one_process(tmp_path, inception_path):
    from tests.evaluation.ddp_worker import lightning

    lightning(tmp_path / "devices1", str(inception_path), 1)  # one process: in this one
    out = tmp_path / "devices2"

    def launch(port: int) -> tuple[bool, str]:
        proc = subprocess.run(
            [sys.executable, str(WORKER), "lightning", str(out), str(inception_path), "2"],
            env=gloo_env(port),
            capture_output=True,
            text=True,
            timeout=400,
        )
        return proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]

    on_a_free_port(launch)
    results = {
        d: [json.loads((tmp_path / f"devices{d}" / f"rank{r}.json").read_text()) for r in range(d)]
        for d in (1, 2)
    }
    one = results[1][0]["logged"]
    rank0, rank1 = (r["logged"] for r in results[2])
    assert results[2][0]["world"] == 2
    feature_metrics = {
        f"eval/{m}_5_ancestral8_{s}"
        for m in ("kid", "precision_inception", "recall_inception")
        for s in ("train", "test")
    }
    assert (
        set(one)
        == {
            "eval/fid_5_ancestral8_train",
            "eval/fid_5_ancestral8_test",
            "eval/is_5_ancestral8_2splits",
            "eval/is_5_ancestral8_1split",
            "eval/nll_bpd_3_test",
            "eval/nll_prior_bpd_3_test",
            "eval/nll_decoder_bpd_3_test",
        }
        | feature_metrics
    )
    assert rank0 == rank1  # every rank computed the same values
    for name, value in one.items():
        assert rank0[name] == pytest.approx(value, rel=1e-5), name
    assert (tmp_path / "devices2" / "nll" / "nll_step_0000002.json").is_file()
