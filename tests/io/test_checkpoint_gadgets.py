"""A checkpoint made of tensors and plain containers cannot choose what code runs: its stored config
names callables (``_target_``) that ddpm.io.stored_config refuses, in one ``error:`` line and before
any call, from every entry point as a user runs it (its console script's ``main``, in this process: see
cli/test_entry_points.py) (the other gadget shapes: tests/io/test_stored_config.py).
"""

from __future__ import annotations

import pickle
from pathlib import Path

import pytest
import torch

from tests.evaluation.helpers import write_lightning_checkpoint
from tests.helpers import TINY, run_main


class _TouchesMarker:
    """Unpickling this creates ``marker``: what a pickle beside a received checkpoint would run."""

    def __init__(self, marker: Path) -> None:
        self.marker = str(marker)

    def __reduce__(self):
        return (open, (self.marker, "w"))


def _assert_refused(result, named: str) -> str:
    """Exit code 2, one ``error:`` line naming the key path and the target, no traceback."""
    errors = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    assert result.returncode == 2, result.stderr[-3000:]
    assert len(errors) == 1 and "Traceback" not in result.stderr, result.stderr[-3000:]
    assert f"{named} is not a class of this project; refusing to build it (nothing was run)" in errors[0]
    return errors[0]


def _command(entry_point: str, ckpt: Path, tmp_path: Path) -> list[str]:
    out = f"hydra.run.dir={tmp_path / 'run'}"
    if entry_point == "ddpm-train":
        return [entry_point, *TINY, "trainer.max_steps=1", f"init_from={ckpt}", out]
    if entry_point == "ddpm-eval":
        # the NLL alone: no Inception weights needed, and it reads the dataset (stored in the checkpoint)
        metrics = ["metrics.fid=false", "metrics.inception_score=false", "metrics.nll.enabled=true"]
        return [entry_point, f"ckpt_path={ckpt}", *metrics, out]
    if entry_point == "ddpm-export":
        return [entry_point, f"ckpt_path={ckpt}", f"output_dir={tmp_path / 'exported'}", out]
    return [entry_point, f"ckpt_path={ckpt}", "num_samples=1", out]


@pytest.mark.parametrize("entry_point", ["ddpm-sample", "ddpm-eval", "ddpm-export", "ddpm-train"])
def test_a_module_config_that_would_unpickle_code_is_refused(tmp_path, entry_point, monkeypatch, capsys):
    marker, payload, ckpt = tmp_path / "marker", tmp_path / "payload.pkl", tmp_path / "received.ckpt"
    payload.write_bytes(pickle.dumps(_TouchesMarker(marker)))
    gadget = {"_target_": "numpy.load", "file": str(payload), "allow_pickle": True}
    checkpoint = {"state_dict": {}, "ddpm_config": {"module": gadget}, "global_step": 0}
    torch.save(checkpoint, ckpt)
    line = _assert_refused(
        run_main(_command(entry_point, ckpt, tmp_path), tmp_path, monkeypatch, capsys),
        "module._target_ = numpy.load",
    )
    assert str(ckpt) in line
    assert not marker.exists()


def test_ddpm_eval_refuses_a_stored_data_config_that_copies_files(tmp_path, monkeypatch, capsys):
    secret, copied, ckpt = tmp_path / "secret", tmp_path / "copied", tmp_path / "received.ckpt"
    secret.write_text("private")
    write_lightning_checkpoint(ckpt, tmp_path)  # a real tiny module: it builds, then the data is read
    checkpoint = torch.load(ckpt, weights_only=True)
    checkpoint["ddpm_config"]["data"] = {"_target_": "shutil.copy", "src": str(secret), "dst": str(copied)}
    torch.save(checkpoint, ckpt)
    _assert_refused(
        run_main(_command("ddpm-eval", ckpt, tmp_path), tmp_path, monkeypatch, capsys),
        "data._target_ = shutil.copy",
    )
    assert not copied.exists()
