"""Runs that survive relaunches: resume=auto, the preemption checkpoint, the divergence guard, the W&B id,
the whole-run progress bar."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from ddpm.callbacks.divergence import non_finite_tensors
from ddpm.cli.ddpm_train import train
from ddpm.errors import DivergenceError, RunDirectoryExistsError
from ddpm.io.checkpoint_file import read_lightning_checkpoint
from ddpm.lightning.resume import newest_checkpoint
from ddpm.utils.wandb_run import kept_run_id
from tests.helpers import TINY, compose_train, run_cli, run_main

BASE = [
    *TINY,
    "model.dropout=0.1",
    "module.warmup_steps=2",
    "module.ema_decay=0.9",
    "data.batch_size=8",
    "trainer.limit_train_batches=5",
    "trainer.val_check_interval=null",
    "trainer.limit_val_batches=0",
]
CHECKPOINTS = [
    "+callbacks.model_checkpoint._target_=lightning.pytorch.callbacks.ModelCheckpoint",
    "+callbacks.model_checkpoint.dirpath=${paths.output_dir}/checkpoints",
    "+callbacks.model_checkpoint.filename='step_{step:07d}'",
    "+callbacks.model_checkpoint.auto_insert_metric_name=false",
    "+callbacks.model_checkpoint.every_n_train_steps=2",
    "+callbacks.model_checkpoint.save_last=true",
    "+callbacks.model_checkpoint.monitor=step",
    "+callbacks.model_checkpoint.mode=max",
    "+callbacks.model_checkpoint.save_top_k=3",
]
GUARD = ["+callbacks.guard._target_=ddpm.callbacks.DivergenceGuard", "+callbacks.guard.check_every_n_steps=5"]
PREEMPTION = ["+callbacks.preemption._target_=ddpm.callbacks.PreemptionCheckpoint"]


def _train(run_dir: Path, overrides: list[str]):
    return train(compose_train([*BASE, *overrides], run_dir))[1]


def _assert_same_state(a: dict, b: dict) -> None:
    """Raw weights, EMA weights and Adam state are equal bit for bit."""
    assert a["state_dict"].keys() == b["state_dict"].keys()
    assert any(k.startswith("ema.module.") for k in a["state_dict"])
    for key, value in a["state_dict"].items():
        assert torch.equal(value, b["state_dict"][key]), f"{key} differs"
    sa, sb = a["optimizer_states"][0]["state"], b["optimizer_states"][0]["state"]
    for idx in sa:
        for field in ("exp_avg", "exp_avg_sq"):
            assert torch.equal(sa[idx][field], sb[idx][field]), f"Adam {field} differs"


def _final(run_dir: Path) -> dict:
    return read_lightning_checkpoint(run_dir / "checkpoints" / "last.ckpt")


# ---------------------------------------------------------------------- resume=auto
def test_relaunch_continues_the_newest_checkpoint_and_refuses_another_run(tmp_path):
    straight = tmp_path / "straight"
    _train(straight, ["trainer.max_steps=8", *CHECKPOINTS])
    relaunched = tmp_path / "relaunched"
    first = _train(relaunched, ["trainer.max_steps=4", *CHECKPOINTS])
    assert first["trainer"].global_step == 4
    (relaunched / "checkpoints" / "step_9999999.ckpt").write_bytes(b"truncated")  # an incomplete write
    again = _train(relaunched, ["trainer.max_steps=8", *CHECKPOINTS])  # the same command, longer
    assert again["trainer"].global_step == 8
    _assert_same_state(_final(straight), _final(relaunched))
    path, ckpt = newest_checkpoint(relaunched)
    assert ckpt["global_step"] == 8 and path.name != "step_9999999.ckpt"

    with pytest.raises(RunDirectoryExistsError, match=r"another run \(module.optimizer.lr"):
        _train(relaunched, ["trainer.max_steps=10", "module.optimizer.lr=1e-3", *CHECKPOINTS])
    with pytest.raises(RunDirectoryExistsError, match="resume=auto"):
        _train(relaunched, ["trainer.max_steps=10", "resume=never", *CHECKPOINTS])
    assert newest_checkpoint(relaunched)[1]["global_step"] == 8


AT_END = [c.replace("lightning.pytorch.callbacks.ModelCheckpoint", "ddpm.callbacks.ModelCheckpointAtEnd")
          for c in CHECKPOINTS]  # fmt: skip


def test_a_run_ending_between_two_saves_keeps_its_final_step_and_continues_exactly(tmp_path):
    """max_steps=7 with a save every 2 steps: Lightning's ModelCheckpoint leaves last.ckpt at step 6;
    ModelCheckpointAtEnd also saves step 7 (mid-epoch), which holds the final weights and from which a
    longer relaunch repeats the straight run bit for bit; a relaunch with nothing left to train writes
    nothing."""
    plain = tmp_path / "plain"
    _train(plain, ["trainer.max_steps=7", *CHECKPOINTS])
    assert _final(plain)["global_step"] == 6  # the behaviour this callback exists for
    run_dir, ckpts = tmp_path / "at_end", tmp_path / "at_end" / "checkpoints"
    first = _train(run_dir, ["trainer.max_steps=7", *AT_END])
    assert _final(run_dir)["global_step"] == 7
    assert sorted(p.name for p in ckpts.glob("step_*")) == [f"step_000000{i}.ckpt" for i in (4, 6, 7)]
    for key, value in first["module"].state_dict().items():
        assert torch.equal(value, _final(run_dir)["state_dict"][key]), f"{key} is not the final step's"
    stamp = (ckpts / "last.ckpt").stat().st_mtime_ns
    _train(run_dir, ["trainer.max_steps=7", *AT_END])  # relaunched: nothing left to train
    assert (ckpts / "last.ckpt").stat().st_mtime_ns == stamp
    straight = tmp_path / "straight"
    _train(straight, ["trainer.max_steps=9", *AT_END])
    assert _train(run_dir, ["trainer.max_steps=9", *AT_END])["trainer"].global_step == 9
    _assert_same_state(_final(straight), _final(run_dir))


@pytest.mark.slow
def test_kill_9_then_the_same_command_continues_bit_identically_in_the_same_wandb_run(tmp_path):
    args = [*BASE, "trainer.max_steps=30", *CHECKPOINTS, "logger=wandb"]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1", "WANDB_MODE": "offline"}
    straight = run_cli(["ddpm-train", *args, f"hydra.run.dir={tmp_path / 'straight'}"], tmp_path, env=env)
    assert straight.returncode == 0, straight.stderr[-2000:]
    run_dir = tmp_path / "killed"
    command = [sys.executable, "-m", "ddpm.cli.ddpm_train", *args, f"hydra.run.dir={run_dir}"]
    quiet = {"stdout": subprocess.DEVNULL, "stderr": subprocess.DEVNULL}
    proc = subprocess.Popen(command, cwd=tmp_path, env=env, **quiet)
    deadline = time.time() + 240
    while time.time() < deadline and not (run_dir / "checkpoints" / "step_0000006.ckpt").exists():
        time.sleep(0.02)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert not (run_dir / "checkpoints" / "step_0000030.ckpt").exists(), "killed too late"
    again = run_cli(["ddpm-train", *args, f"hydra.run.dir={run_dir}"], tmp_path, env=env)
    assert again.returncode == 0, again.stderr[-2000:]
    assert "resume=auto: continuing" in again.stdout + again.stderr
    _assert_same_state(_final(tmp_path / "straight"), _final(run_dir))
    runs = sorted((run_dir / "wandb").glob("offline-run-*"))
    assert len(runs) == 2 and {r.name.rsplit("-", 1)[1] for r in runs} == {kept_run_id(run_dir)}
    assert _final(run_dir)["ddpm_config"]["logger"]["wandb"]["id"] == kept_run_id(run_dir)


# ---------------------------------------------------------------------- preemption
def test_preemption_signal_checkpoints_at_a_step_boundary_and_the_relaunch_is_exact(tmp_path):
    straight = tmp_path / "straight"
    _train(straight, ["trainer.max_steps=9", *CHECKPOINTS, *PREEMPTION])
    run_dir = tmp_path / "preempted"
    signal_at = [
        "+callbacks.signal._target_=tests.lightning.faults.SignalSelf",
        "+callbacks.signal.at_step=4",
        "+callbacks.signal.signum=12",  # SIGUSR2, submitit's signal
    ]
    first = _train(run_dir, ["trainer.max_steps=9", *CHECKPOINTS, *PREEMPTION, *signal_at])
    assert first["trainer"].global_step == 5  # the step under way when the signal came, then stop
    preempted = read_lightning_checkpoint(run_dir / "checkpoints" / "preempted.ckpt")
    assert preempted["global_step"] == 5
    assert signal.getsignal(signal.SIGUSR2) in (signal.SIG_DFL, None) or callable(signal.getsignal(12))
    again = _train(run_dir, ["trainer.max_steps=9", *CHECKPOINTS, *PREEMPTION])
    assert again["trainer"].global_step == 9
    _assert_same_state(_final(straight), _final(run_dir))


def test_a_requeued_launch_ends_without_a_result(tmp_path, monkeypatch):
    """Once SLURM took the requeue, the launch must not hand a half-done run's metric to a launcher."""
    from ddpm.callbacks import preemption
    from ddpm.cli.ddpm_train import train_job

    requeued = []
    monkeypatch.setenv("SLURM_JOB_ID", "4242")
    monkeypatch.setattr(preemption, "requeue_slurm_job", lambda job: requeued.append(job) or True)
    signal_at = [
        "+callbacks.signal._target_=tests.lightning.faults.SignalSelf",
        "+callbacks.signal.at_step=2",
    ]
    cfg = compose_train([*BASE, "trainer.max_steps=6", *PREEMPTION, *signal_at], tmp_path)
    with pytest.raises(SystemExit) as exc:
        train_job(cfg)
    assert exc.value.code == 0 and requeued == ["4242"]
    assert read_lightning_checkpoint(tmp_path / "checkpoints" / "preempted.ckpt")["global_step"] == 3


# ---------------------------------------------------------------------- divergence
def _checkpoints_all_finite(run_dir: Path) -> list[int]:
    steps = []
    for path in sorted((run_dir / "checkpoints").glob("*.ckpt")):
        ckpt = read_lightning_checkpoint(path)
        assert not non_finite_tensors(ckpt["state_dict"]), f"{path.name} holds non-finite weights"
        steps.append(int(ckpt["global_step"]))
    return steps


def test_injected_nan_stops_the_run_with_one_line_and_keeps_every_good_checkpoint(
    tmp_path, monkeypatch, capsys
):
    run_dir = tmp_path / "run"
    poison = [
        "+callbacks.poison._target_=tests.lightning.faults.PoisonWeights",
        "+callbacks.poison.at_step=7",
    ]
    args = [*BASE, "trainer.max_steps=40", *CHECKPOINTS, *GUARD, *poison, f"hydra.run.dir={run_dir}"]
    result = run_main(["ddpm-train", *args], tmp_path, monkeypatch, capsys)  # its main, in this process
    assert result.returncode == 2, result.stderr[-2000:]
    errors = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and "Traceback" not in result.stderr
    assert "train/loss and gradient norm are not finite at step 8" in errors[0], errors[0]
    assert "checkpoints/" in errors[0] and ".ckpt (step 6)" in errors[0]
    steps = _checkpoints_all_finite(run_dir)
    assert max(steps) == 6 and 6 in steps and set(steps) <= {2, 4, 6}


def test_infinite_gradient_norm_is_named_and_nothing_non_finite_is_saved(tmp_path):
    grads = [
        "+callbacks.grads._target_=tests.lightning.faults.InfiniteGradients",
        "+callbacks.grads.at_step=3",
    ]
    with pytest.raises(DivergenceError, match="gradient norm is not finite at step 4"):
        _train(tmp_path, ["trainer.max_steps=20", *CHECKPOINTS, *GUARD, *grads])
    assert max(_checkpoints_all_finite(tmp_path)) == 2


# ---------------------------------------------------------------------- W&B id, progress
def test_wandb_run_id_is_created_once_by_rank_zero_and_kept(tmp_path, monkeypatch):
    from lightning.fabric.utilities.rank_zero import rank_zero_only

    monkeypatch.setattr(rank_zero_only, "rank", 1, raising=False)
    assert kept_run_id(tmp_path) is None and not (tmp_path / "wandb_run_id").exists()
    monkeypatch.setattr(rank_zero_only, "rank", 0)
    run_id = kept_run_id(tmp_path)
    assert run_id and len(run_id) == 8 and run_id.isalnum()
    assert kept_run_id(tmp_path) == run_id
    monkeypatch.setattr(rank_zero_only, "rank", 1)
    assert kept_run_id(tmp_path) == run_id


def test_progress_bar_counts_optimizer_steps_of_the_whole_run(tmp_path):
    bar = ["+callbacks.bar._target_=ddpm.callbacks.RunProgressBar", "+callbacks.bar.refresh_rate=3"]
    on = ["trainer.enable_progress_bar=true", *CHECKPOINTS, *bar]
    first = _train(tmp_path, ["trainer.max_steps=8", *on])  # 5 batches per epoch: crosses an epoch
    tqdm_bar = first["trainer"].progress_bar_callback.train_progress_bar
    assert (tqdm_bar.n, tqdm_bar.total, tqdm_bar.unit) == (8, 8, "step")
    again = _train(tmp_path, ["trainer.max_steps=12", *on])  # resumed at step 8
    tqdm_bar = again["trainer"].progress_bar_callback.train_progress_bar
    assert (tqdm_bar.initial, tqdm_bar.n, tqdm_bar.total) == (8, 12, 12)
    assert float(tqdm_bar.postfix.split("loss=")[1].split(",")[0]) > 0
