"""A researcher's own class in their own checkpoint: refused by default, built when their command line
names it in ``trusted_targets`` (:func:`ddpm.io.stored_config.trust_targets`); the file never decides."""

from __future__ import annotations

import sys

import pytest

from ddpm.cli import ddpm_sample
from ddpm.io import stored_config
from ddpm.io.stored_config import StoredConfigError, instantiate_stored, trust_targets
from ddpm.models import UNet
from tests.evaluation.helpers import write_lightning_checkpoint

MY_UNET = f"{__name__}.MyUNet"


class MyUNet(UNet):
    """A researcher's own network (here the U-Net under another name)."""


@pytest.fixture(autouse=True)
def _nothing_trusted(monkeypatch):
    monkeypatch.setattr(stored_config, "_TRUSTED_TARGETS", set())


def test_an_own_class_is_refused_with_the_key_that_trusts_it():
    with pytest.raises(StoredConfigError) as refused:
        instantiate_stored({"_target_": MY_UNET}, "mine.ckpt", "module.net")
    message = str(refused.value)
    assert f"module.net._target_ = {MY_UNET} is not a class of this project" in message
    assert "trusted_targets=[...]" in message


def test_trusted_by_name_it_is_built_and_nothing_else_is():
    trust_targets([MY_UNET])
    small = {"_target_": MY_UNET, "ch": 32, "ch_mult": [1], "attn_resolutions": []}
    net = instantiate_stored(small, "mine.ckpt", "module.net")
    assert type(net) is MyUNet
    with pytest.raises(StoredConfigError, match="numpy.load is not a class of this project"):
        instantiate_stored({"_target_": "numpy.load", "file": "x"}, "mine.ckpt", "module.net")


@pytest.mark.parametrize("name", [3, "MyUNet", "os.system; rm", None])
def test_a_trusted_name_is_a_dotted_class_name(name):
    with pytest.raises(StoredConfigError, match="is not a dotted class name"):
        trust_targets([name])


def _sample(ckpt, tmp_path, monkeypatch, *extra: str) -> None:
    monkeypatch.chdir(tmp_path)
    args = [f"ckpt_path={ckpt}", "num_samples=2", "sampler.steps=2", f"hydra.run.dir={tmp_path / 'run'}"]
    monkeypatch.setattr(sys, "argv", ["ddpm-sample", *args, *extra])
    ddpm_sample.main()


def test_ddpm_sample_builds_an_own_network_named_on_its_command_line(tmp_path, monkeypatch, capsys):
    ckpt = tmp_path / "mine.ckpt"
    write_lightning_checkpoint(ckpt, tmp_path / "train", [f"model._target_={MY_UNET}"])
    with pytest.raises(SystemExit) as exit_info:
        _sample(ckpt, tmp_path, monkeypatch)
    assert exit_info.value.code == 2
    assert f"module.net._target_ = {MY_UNET} is not a class of this project" in capsys.readouterr().err
    _sample(ckpt, tmp_path, monkeypatch, f"trusted_targets=[{MY_UNET}]")
    assert list((tmp_path / "run").glob("*.png"))
