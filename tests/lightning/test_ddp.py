"""Two-process DDP on CPU (gloo, strategy "ddp", in a subprocess) trains and keeps EMA equal on ranks."""

import torch

from tests.helpers import REPO_ROOT, TINY, run_cli


def test_two_process_ddp_keeps_ema_weights_equal(tmp_path):
    probe = tmp_path / "probe"
    result = run_cli(
        [
            "ddpm-train",
            *TINY,
            "trainer=ddp_cpu",
            "trainer.max_steps=3",
            "trainer.val_check_interval=3",
            "module.ema_decay=0.9",
            "module.warmup_steps=0",
            "data.batch_size=8",
            "+callbacks.probe._target_=tests.lightning.ddp_probe.DumpRankState",
            f"+callbacks.probe.output_dir={probe}",
        ],
        cwd=tmp_path,  # a user's start directory: logs/ land there
        timeout=600,
        env={"PYTHONPATH": str(REPO_ROOT)},  # the probe callback lives in tests/
    )
    assert result.returncode == 0, result.stderr[-4000:]
    r0, r1 = (torch.load(probe / f"rank{r}.pt") for r in (0, 1))
    assert r0["world_size"] == r1["world_size"] == 2
    # each rank trained on its own shard
    assert len(r0["batch_sums"]) == len(r1["batch_sums"]) == 3
    assert r0["batch_sums"] != r1["batch_sums"]
    # gradients were all-reduced: identical raw and EMA weights on both ranks, and EMA != raw
    for key in r0["net"]:
        assert torch.equal(r0["net"][key], r1["net"][key]), key
    for key in r0["ema"]:
        assert torch.equal(r0["ema"][key], r1["ema"][key]), key
    assert int(r0["ema"]["n_averaged"]) == 3
    assert any(not torch.equal(r0["net"][k], r0["ema"]["module." + k]) for k in r0["net"])
    # one run directory for the whole DDP job, not one per rank (and runs/latest links it)
    runs_dir = tmp_path / "logs" / "train" / "runs"
    runs = [p for p in runs_dir.iterdir() if p.name != "latest"]
    assert len(runs) == 1, runs
    assert (runs_dir / "latest").resolve() == runs[0].resolve()
