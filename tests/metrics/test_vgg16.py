"""The VGG-16 of precision/recall: offline weight resolution, one-line errors, pickled code refused."""

import pytest
import torch
from torch import nn

from ddpm.metrics import vgg16 as vgg16_module
from ddpm.metrics.vgg16 import VGG16_FILENAME, VGG16FeatureExtractor, VGG16WeightsError, resolve_vgg16_weights

RAN = []


def _record_a_call():
    RAN.append(True)
    return {}


class Payload:
    """A pickled object whose unpickling calls a function: what a malicious weights file carries."""

    def __reduce__(self):
        return (_record_a_call, ())


@pytest.fixture
def offline(monkeypatch, tmp_path):
    """An empty torch hub cache and no network."""
    monkeypatch.setattr(vgg16_module, "hub_checkpoint_dir", lambda: tmp_path / "hub" / "checkpoints")
    monkeypatch.delenv(vgg16_module.ENV_VAR, raising=False)

    def no_network(destination):
        raise OSError("URLError: <urlopen error [Errno -3] Temporary failure in name resolution>")

    monkeypatch.setattr(vgg16_module, "_download", no_network)
    return tmp_path / "hub" / "checkpoints"


def test_a_missing_file_is_one_line_naming_the_file_and_where_to_put_it(offline):
    with pytest.raises(VGG16WeightsError) as info:
        resolve_vgg16_weights(None, allow_download=True)
    message = str(info.value)
    assert str(offline / VGG16_FILENAME) in message
    assert "https://download.pytorch.org/models/vgg16-397923af.pth" in message
    assert "metrics.vgg16_weights=" in message and "DDPM_VGG16_WEIGHTS" in message
    assert "name resolution" in message and "\n" not in message
    with pytest.raises(VGG16WeightsError, match="no VGG-16 weights in .* downloads are disabled"):
        resolve_vgg16_weights(None, allow_download=False)
    with pytest.raises(VGG16WeightsError, match="do not exist"):
        resolve_vgg16_weights(offline / "nowhere.pth")


def test_weights_are_found_by_path_env_and_hub_cache(offline, tmp_path, monkeypatch):
    given = tmp_path / "vgg.pth"
    given.write_bytes(b"resolution only checks that the file exists")
    assert resolve_vgg16_weights(given) == given
    monkeypatch.setenv(vgg16_module.ENV_VAR, str(given))
    assert resolve_vgg16_weights(None) == given
    monkeypatch.delenv(vgg16_module.ENV_VAR)
    offline.mkdir(parents=True)
    (offline / VGG16_FILENAME).write_bytes(given.read_bytes())  # where torchvision keeps it
    assert resolve_vgg16_weights(None, allow_download=False) == offline / VGG16_FILENAME


def test_a_file_carrying_pickled_code_is_refused_before_torch_fidelity_reads_it(tmp_path, monkeypatch):
    import torch_fidelity.feature_extractor_vgg16 as tf_vgg16

    def must_not_run(*args, **kwargs):
        raise AssertionError("torch-fidelity read an unchecked file")

    monkeypatch.setattr(tf_vgg16.FeatureExtractorVGG16, "__init__", must_not_run)
    path = tmp_path / "evil.pth"
    torch.save({"features.0.weight": torch.zeros(1), "payload": Payload()}, path)
    with pytest.raises(VGG16WeightsError, match="pickled Python objects") as info:
        VGG16FeatureExtractor(path)
    assert "\n" not in str(info.value) and RAN == []  # refused, nothing ran


def test_another_state_dict_is_a_clear_error(tmp_path):
    path = tmp_path / "not_vgg.pth"
    torch.save(nn.Linear(4, 2).state_dict(), path)
    with pytest.raises(VGG16WeightsError, match="is not torchvision's VGG-16 state dict"):
        VGG16FeatureExtractor(path)
