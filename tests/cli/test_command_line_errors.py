"""The error contract for what users type wrong on the command line: one ``error:`` line on stderr naming
the key or option and the fix, exit code 2, from every entry point (ddpm.cli.task_wrapper.run_app)."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from tests.helpers import run_cli, run_main


def _error_line(stderr: str) -> str:
    errors = [line for line in stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1, stderr[-3000:]
    assert "Traceback" not in stderr and "HYDRA_FULL_ERROR" not in stderr, stderr[-3000:]
    return errors[0]


def _run_main(program: str, args: list[str], monkeypatch, capsys, tmp_path) -> str:
    """The entry point's ``main`` in this process, as its console script calls it; the error line."""
    result = run_main([program, *args], tmp_path, monkeypatch, capsys)
    assert result.returncode == 2, result.stderr[-3000:]
    assert os.environ.get("HYDRA_FULL_ERROR") == "0"  # the user's setting is back (conftest sets 0)
    return _error_line(result.stderr)


@pytest.mark.parametrize(
    ("program", "args", "needles"),
    [
        ("ddpm-train", ["trainer.max_step=5"], ["trainer.max_step", "did you mean trainer.max_steps?"]),
        (
            "ddpm-train",
            ["data=cifar100"],
            ["data=cifar100", "did you mean data=cifar10?", "digits, image_folder"],
        ),
        ("ddpm-train", ["experiment=nope"], ["experiment=nope", "choose one of", "quickstart"]),
        ("ddpm-train", ["hydra/launcher=slurn"], ["did you mean hydra/launcher=slurm?"]),
        ("ddpm-train", ["model.zzz=1"], ["model.zzz is not a key of model", "ch_mult", "+model.zzz=1"]),
        ("ddpm-train", ["trainer.max_steps=[1"], ["cannot parse the override", "trainer.max_steps=[1"]),
        ("ddpm-eval", ["metrics.fdi=false"], ["did you mean metrics.fid?"]),
        ("ddpm-sample", ["num_sample=4"], ["did you mean num_samples?"]),
        ("ddpm-sample", [], ["missing ckpt_path", "ddpm-sample ckpt_path=<"]),
        ("ddpm-export", ["ckpt_path=x.ckpt"], ["missing output_dir", "ddpm-export ckpt_path=<"]),
    ],
)
def test_a_command_line_mistake_is_one_line_naming_the_fix(
    program, args, needles, monkeypatch, capsys, tmp_path
):
    line = _run_main(program, args, monkeypatch, capsys, tmp_path)
    for needle in needles:
        assert needle in line, line
    if "missing" not in line:  # refused while composing: before Hydra makes the run directory
        assert not (tmp_path / "logs").exists(), "a refused command creates no run directory"


def test_an_evaluation_with_nothing_to_compute_is_refused_before_sampling(monkeypatch, capsys, tmp_path):
    off = ["metrics.fid=false", "metrics.inception_score=false", "metrics.digits_score=false"]
    args = ["ckpt_path=missing.ckpt", *off]
    line = _run_main("ddpm-eval", args, monkeypatch, capsys, tmp_path)
    assert "nothing to compute" in line and "metrics.fid=true" in line
    assert not list(tmp_path.rglob("samples_*.npz"))


@pytest.mark.skipif(sys.modules["torch"].cuda.is_available(), reason="needs a machine without a GPU")
def test_the_papers_command_on_a_machine_without_a_gpu_says_trainer_cpu(monkeypatch, capsys, tmp_path):
    line = _run_main("ddpm-train", ["experiment=ddpm_cifar10"], monkeypatch, capsys, tmp_path)
    assert "needs a CUDA GPU" in line and "add trainer=cpu" in line


def test_a_misspelt_key_through_the_console_script(tmp_path):
    result = run_cli(["ddpm-train", "trainer.max_step=5"], cwd=tmp_path)
    assert result.returncode == 2
    assert "did you mean trainer.max_steps?" in _error_line(result.stderr)


@pytest.mark.skipif(sys.modules["torch"].cuda.is_available(), reason="needs a machine without a GPU")
def test_wandb_without_a_login_is_one_line_naming_the_three_ways_out(tmp_path):
    # a user who never ran `wandb login`: no key in the environment or in ~/.netrc, no offline mode
    env = {k: v for k, v in os.environ.items() if not k.startswith("WANDB_")}
    env.update(HOME=str(tmp_path), OMP_NUM_THREADS="1")
    command = ["ddpm-train", "experiment=ddpm_cifar10", "trainer=cpu", "model=unet_tiny", "data=digits"]
    result = subprocess.run(
        [sys.executable, "-m", "ddpm.cli.ddpm_train", *command[1:]],
        cwd=tmp_path,
        env=env,
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 2, result.stderr[-3000:]
    line = _error_line(result.stderr)
    assert all(fix in line for fix in ("wandb login", "WANDB_MODE=offline", "logger=csv")), line
