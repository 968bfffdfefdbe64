"""The TF32 policy: one switch for matmuls and cuDNN convolutions; strict fp32 restores what it found."""

import pytest
import torch

from ddpm.errors import ConfigError
from ddpm.utils.precision import set_tf32_policy, strict_fp32


@pytest.fixture
def restore_tf32():
    saved = torch.get_float32_matmul_precision(), torch.backends.cudnn.allow_tf32
    yield
    torch.set_float32_matmul_precision(saved[0])
    torch.backends.cudnn.allow_tf32 = saved[1]


@pytest.mark.parametrize(("precision", "cudnn_tf32"), [("highest", False), ("high", True), ("medium", True)])
def test_policy_sets_matmuls_and_convolutions_together(restore_tf32, precision, cudnn_tf32):
    torch.backends.cudnn.allow_tf32 = not cudnn_tf32
    set_tf32_policy(precision)
    assert torch.get_float32_matmul_precision() == precision
    assert torch.backends.cudnn.allow_tf32 is cudnn_tf32


def test_none_leaves_torch_settings_and_bad_values_are_refused(restore_tf32):
    set_tf32_policy("high")
    set_tf32_policy(None)
    assert torch.get_float32_matmul_precision() == "high"
    with pytest.raises(ConfigError, match="float32_matmul_precision='fast'"):
        set_tf32_policy("fast")


def test_strict_fp32_inside_and_the_policy_back_outside(restore_tf32):
    set_tf32_policy("high")
    with strict_fp32():
        assert torch.get_float32_matmul_precision() == "highest"
        assert not torch.backends.cudnn.allow_tf32 and not torch.backends.cuda.matmul.allow_tf32
    assert torch.get_float32_matmul_precision() == "high" and torch.backends.cudnn.allow_tf32


def test_ddpm_train_applies_the_policy_on_gpu_machines_only(tmp_path, monkeypatch):
    from ddpm.cli import ddpm_train
    from tests.helpers import TINY, compose_train

    class Applied(Exception):
        pass

    def record(value):
        raise Applied(value)

    monkeypatch.setattr(ddpm_train, "set_tf32_policy", record)
    cfg = compose_train([*TINY, "trainer.max_steps=1", "float32_matmul_precision=highest"], tmp_path / "a")
    ddpm_train.train(cfg)  # no GPU: CPU matmuls are left alone
    monkeypatch.setattr(ddpm_train.torch.cuda, "is_available", lambda: True)
    with pytest.raises(Applied, match="highest"):
        ddpm_train.train(cfg)
