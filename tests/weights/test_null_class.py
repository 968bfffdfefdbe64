"""A class-conditional model's null class is used only where it was trained (``class_dropout > 0``).

The training run records its label dropout in the checkpoint; older checkpoints are read from the config
that built the network; an exported folder carries it to the loader and to diffusers. Guidance,
``labels=null`` and the unconditional NLL are refused in one line where the null class is untrained or
not known to be trained, unless the user says ``null_class_trained=true``.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from ddpm.cli.ddpm_eval import eval_settings, prepare
from ddpm.cli.ddpm_sample import generate_images
from ddpm.cli.labels import null_class_use
from ddpm.errors import ConfigError
from ddpm.io.checkpoint_file import CLASS_DROPOUT_KEY
from ddpm.weights import export_checkpoint, load_model
from tests.evaluation.helpers import write_lightning_checkpoint
from tests.evaluation.test_conditional_eval import (  # noqa: F401 (a fixture)
    CONDITIONAL,
    compose_sample,
    conditional_checkpoint,
)
from tests.evaluation.test_eval_app import eval_overrides
from tests.helpers import compose_train, run_main

UNTRAINED = "class_dropout=0 .*null class is untrained"


def _checkpoint(tmp_path: Path, dropout: float | None, record: float | None = None) -> Path:
    """A tiny class-conditional checkpoint; ``dropout`` None leaves model.class_dropout to the config's
    default; ``record`` writes ddpm-train's record (None: an older checkpoint without one)."""
    path = tmp_path / f"cond_{dropout}_{record}.ckpt"
    overrides = [*CONDITIONAL] + ([] if dropout is None else [f"model.class_dropout={dropout}"])
    write_lightning_checkpoint(path, tmp_path / "run", overrides)
    if record is not None:
        checkpoint = torch.load(path, weights_only=True)
        checkpoint[CLASS_DROPOUT_KEY] = record
        torch.save(checkpoint, path)
    return path


def _sample(ckpt: Path, out: Path, *extra: str) -> dict:
    overrides = [f"ckpt_path={ckpt}", "sampler=ddim", "sampler.steps=2", "progress=false", "num_samples=2"]
    return generate_images(compose_sample([*overrides, "device=cpu", f"output_dir={out}", *extra]))


def test_the_training_module_records_the_label_dropout(tmp_path):
    from hydra.utils import instantiate

    for dropout, expected in [("0.0", 0.0), ("0.25", 0.25)]:
        cfg = compose_train([*CONDITIONAL, f"model.class_dropout={dropout}"], tmp_path / dropout)
        checkpoint: dict = {}
        instantiate(cfg.module).on_save_checkpoint(checkpoint)
        assert checkpoint == {CLASS_DROPOUT_KEY: expected}
    unconditional: dict = {}
    instantiate(compose_train([], tmp_path / "u").module).on_save_checkpoint(unconditional)
    assert unconditional == {}  # nothing to record


def test_a_trained_checkpoint_holds_the_record(conditional_checkpoint):  # noqa: F811
    """Lightning calls the module's hook: five training steps with label dropout 0.1, saved by the Trainer."""
    assert torch.load(conditional_checkpoint, weights_only=True)[CLASS_DROPOUT_KEY] == 0.1
    assert load_model(conditional_checkpoint).class_dropout == 0.1


def test_the_record_wins_and_older_checkpoints_read_the_config(tmp_path):
    assert load_model(_checkpoint(tmp_path, 0.1, record=0.0)).class_dropout == 0.0
    assert load_model(_checkpoint(tmp_path, 0.0)).class_dropout == 0.0  # no record: the stored config
    assert load_model(_checkpoint(tmp_path, None)).class_dropout == 0.1  # the config's default
    assert load_model(_checkpoint(tmp_path, 0.3)).class_dropout == 0.3


def test_what_uses_the_null_class():
    assert null_class_use("balanced", 2.0) == "guidance_scale=2.0"
    assert null_class_use(None, None) == "labels=null (unconditional samples)"
    assert null_class_use("balanced", 0.0) is None  # w = 0 makes no unconditional call
    assert null_class_use([3], None) is None
    assert null_class_use("balanced", None, nll=True).startswith("the NLL")


def test_ddpm_sample_refuses_an_untrained_null_class(tmp_path):
    ckpt = _checkpoint(tmp_path, 0.0)
    with pytest.raises(ConfigError, match=f"guidance_scale=1 uses the null class .*{UNTRAINED}"):
        _sample(ckpt, tmp_path / "a", "labels=balanced", "guidance_scale=1")
    with pytest.raises(ConfigError, match=f"labels=null .*{UNTRAINED}"):
        _sample(ckpt, tmp_path / "b")
    assert not (tmp_path / "a").exists() and not (tmp_path / "b").exists()
    assert _sample(ckpt, tmp_path / "c", "labels=[3,7]", "guidance_scale=0")["images"].shape[0] == 2
    # the user's word replaces the record
    assert _sample(ckpt, tmp_path / "d", "null_class_trained=true")["images"].shape[0] == 2
    trained = _checkpoint(tmp_path, 0.1)
    with pytest.raises(ConfigError, match="null_class_trained=false"):
        _sample(trained, tmp_path / "e", "labels=balanced", "guidance_scale=1", "null_class_trained=false")


def test_an_exported_folder_carries_the_record(tmp_path):
    untrained = export_checkpoint(_checkpoint(tmp_path, 0.0), tmp_path / "untrained")
    assert json.loads((untrained / "model_index.json").read_text())["null_class_trained"] is False
    scheduler = json.loads((untrained / "scheduler" / "scheduler_config.json").read_text())
    assert scheduler["_ddpm_export"]["class_dropout"] == 0.0
    assert load_model(untrained).class_dropout == 0.0 and load_model(untrained).net.class_dropout == 0.0
    with pytest.raises(ConfigError, match=UNTRAINED):
        _sample(untrained, tmp_path / "a", "labels=balanced", "guidance_scale=1")
    trained = export_checkpoint(_checkpoint(tmp_path, 0.25), tmp_path / "trained")
    assert json.loads((trained / "model_index.json").read_text())["null_class_trained"] is True
    assert load_model(trained).class_dropout == 0.25
    # an older export (or someone else's folder) has no record: refused until the user says so
    del scheduler["_ddpm_export"]["class_dropout"]
    (untrained / "scheduler" / "scheduler_config.json").write_text(json.dumps(scheduler))
    assert load_model(untrained).class_dropout is None
    with pytest.raises(ConfigError, match="does not record its class_dropout.*null_class_trained=true"):
        _sample(untrained, tmp_path / "b")
    assert _sample(untrained, tmp_path / "c", "null_class_trained=true")["images"].shape[0] == 2


def test_ddpm_eval_refuses_the_unconditional_nll_before_any_work(tmp_path, inception_path):
    ckpt = _checkpoint(tmp_path, 0.0)
    cfg = compose_train(eval_overrides(ckpt, inception_path, tmp_path / "cache"), tmp_path, "eval")
    with pytest.raises(ConfigError, match=f"the NLL .*{UNTRAINED}"):
        prepare(cfg, eval_settings(cfg), torch.device("cpu"))
    no_nll = [*eval_overrides(ckpt, inception_path, tmp_path / "cache"), "metrics.nll.enabled=false"]
    cfg = compose_train([*no_nll, "labels=null"], tmp_path, "eval")
    with pytest.raises(ConfigError, match=f"labels=null .*{UNTRAINED}"):
        prepare(cfg, eval_settings(cfg), torch.device("cpu"))


def test_the_refusal_is_one_line_and_exit_2(tmp_path, monkeypatch, capsys):
    ckpt = _checkpoint(tmp_path, 0.0)
    args = ["ddpm-sample", f"ckpt_path={ckpt}", "labels=balanced", "guidance_scale=3", "num_samples=2"]
    result = run_main([*args, f"hydra.run.dir={tmp_path}/h"], tmp_path, monkeypatch, capsys)  # its main, here
    assert result.returncode == 2 and "Traceback" not in result.stderr
    errors = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and "class_dropout=0" in errors[0] and "retrain" in errors[0]
