"""The entry points share one error contract: the same bad input gives one ``error:`` line on
stderr, no traceback and exit code 2 from ddpm-train, ddpm-eval, ddpm-sample and ddpm-export alike.

Each runs its console script's ``main`` in this process (tests.helpers.run_main); the same contract
through a real subprocess: cli/test_command_line_errors.py (ddpm-train), evaluation/test_eval_app.py
(ddpm-eval), sampling/test_checkpoint_and_cli.py (ddpm-sample), weights/test_export.py (ddpm-export)."""

import pytest
import torch

from tests.evaluation.helpers import write_lightning_checkpoint
from tests.helpers import TINY, run_main


class _RunsCode:
    """An object whose unpickling calls a function: what a malicious checkpoint would carry."""

    def __reduce__(self):
        return (print, ("this ran while loading a checkpoint",))


def _assert_one_error_line(result, *needles: str) -> str:
    errors = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    assert result.returncode == 2, result.stderr[-3000:]
    assert len(errors) == 1, result.stderr[-3000:]
    assert "Traceback" not in result.stderr and "Error executing job" not in result.stderr
    assert "this ran while loading" not in result.stdout + result.stderr
    for needle in needles:
        assert needle in errors[0], errors[0]
    return errors[0]


def _command(name: str, ckpt, tmp_path) -> list[str]:
    out = f"hydra.run.dir={tmp_path / name}"
    if name == "ddpm-train":
        return [name, *TINY, "trainer.max_steps=1", f"ckpt_path={ckpt}", out]
    if name == "ddpm-eval":
        nll_only = ["metrics.fid=false", "metrics.inception_score=false", "metrics.nll.enabled=true"]
        return [name, f"ckpt_path={ckpt}", *nll_only, "data=digits", out]
    if name == "ddpm-export":
        return [name, f"ckpt_path={ckpt}", f"output_dir={tmp_path / 'exported'}", out]
    return [name, f"ckpt_path={ckpt}", "num_samples=1", out]


@pytest.mark.parametrize("entry_point", ["ddpm-train", "ddpm-eval", "ddpm-sample", "ddpm-export"])
def test_a_checkpoint_carrying_pickled_objects_is_refused_in_one_line(
    tmp_path, entry_point, monkeypatch, capsys
):
    bad = tmp_path / "received.ckpt"
    torch.save({"state_dict": {}, "ddpm_config": {"module": {}}, "extra": _RunsCode()}, bad)
    _assert_one_error_line(
        run_main(_command(entry_point, bad, tmp_path), tmp_path, monkeypatch, capsys), "pickled", str(bad)
    )


@pytest.mark.parametrize("entry_point", ["ddpm-train", "ddpm-eval", "ddpm-sample"])
def test_a_bad_config_value_is_one_line_from_every_entry_point(tmp_path, entry_point, monkeypatch, capsys):
    ckpt = tmp_path / "good.ckpt"
    write_lightning_checkpoint(ckpt, tmp_path)
    if entry_point == "ddpm-train":
        command = [entry_point, *TINY, "data.batch_size=0", f"hydra.run.dir={tmp_path / 'train'}"]
    elif entry_point == "ddpm-sample":
        command = [*_command(entry_point, ckpt, tmp_path), "batch_size=0"]
    else:  # the NLL needs the dataset: the bad value surfaces inside Hydra's instantiate
        command = [
            *_command(entry_point, ckpt, tmp_path),
            "data=digits",
            "data.batch_size=0",
            "metrics.nll.enabled=true",
        ]
    _assert_one_error_line(run_main(command, tmp_path, monkeypatch, capsys), "batch_size")
