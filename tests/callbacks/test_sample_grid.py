"""The sample-grid callback's class grid (the conditional quickstart's): one row per class, guidance scales,
and the digits classifier's accuracy."""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pytest
import torch
from hydra.utils import instantiate
from PIL import Image

from ddpm.callbacks import SampleGridCallback
from ddpm.data.digits import load_digit_images, load_digit_labels
from ddpm.diffusion import GaussianDiffusion
from ddpm.errors import ConfigError
from ddpm.sampling import DDIMSampler
from ddpm.testing.oracle import ClassConditionalOracle
from tests.helpers import compose_train, run_main


def _digit_oracle(permute: bool = False) -> ClassConditionalOracle:
    """Class k = N(mean image of the real digit k, 0.05^2): an exact conditional model of 'digits'."""
    images, labels = load_digit_images(), torch.as_tensor(load_digit_labels())
    means = torch.stack([images[labels == k].mean(0) for k in range(10)])
    if permute:  # a model that draws digit k + 1 when asked for k
        means = means.roll(-1, dims=0)
    return ClassConditionalOracle(GaussianDiffusion(num_timesteps=100), means, torch.full_like(means, 0.05))


def _run(oracle: ClassConditionalOracle, tmp_path, scales) -> SampleGridCallback:
    callback = SampleGridCallback(
        tmp_path,
        num_classes=10,
        per_class=3,
        sampler=lambda d: DDIMSampler(d, steps=10),
        guidance_scales=scales,
        score_digits=True,
    )
    module = SimpleNamespace(ema_net=oracle, diffusion=oracle.diffusion, device=torch.device("cpu"))
    trainer = SimpleNamespace(
        global_rank=0, global_step=7, loggers=[], datamodule=SimpleNamespace(image_shape=(1, 16, 16))
    )
    callback.run(trainer, module, final=True)
    return callback


def test_class_grid_rows_and_accuracy_of_an_exact_conditional_model(tmp_path, capsys):
    callback = _run(_digit_oracle(), tmp_path, [0.0, 3.0])
    assert callback.labels().tolist()[:7] == [0, 0, 0, 1, 1, 1, 2]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["step_0000007_w0.png", "step_0000007_w3.png"]
    assert callback.accuracy["w0"] >= 0.9 and callback.accuracy["w3"] >= 0.9
    assert set(callback.last_metrics) == {"eval/class_accuracy_w0", "eval/class_accuracy_w3"}
    assert "Samples classified as the requested digit (30 per scale" in capsys.readouterr().out
    wrong = _run(_digit_oracle(permute=True), tmp_path / "wrong", [None])
    assert wrong.accuracy["none"] <= 0.2  # the accuracy can fail: it reads what the samples show


def test_quickstart_conditional_config_and_unchanged_quickstart(tmp_path):
    cfg = compose_train(["experiment=quickstart_conditional"], tmp_path)
    assert cfg.model.num_classes == 10 and cfg.data.class_labels is True
    callback = instantiate(cfg.callbacks.class_grid)
    assert isinstance(callback, SampleGridCallback) and callback.guidance_scales == [0.0, 1.0, 3.0]
    plain = compose_train(["experiment=quickstart"], tmp_path)
    assert plain.model.num_classes == 0 and plain.data.class_labels is False
    assert "class_grid" not in plain.callbacks


def test_one_callback_draws_plain_and_class_grids(tmp_path):
    oracle = _digit_oracle()
    plain = SampleGridCallback(tmp_path / "plain", num_samples=4, sampler=lambda d: DDIMSampler(d, steps=2))
    module = SimpleNamespace(ema_net=oracle, diffusion=oracle.diffusion, device=torch.device("cpu"))
    trainer = SimpleNamespace(
        global_rank=0, global_step=3, loggers=[], datamodule=SimpleNamespace(image_shape=(1, 16, 16))
    )
    assert plain.labels() is None and plain.run(trainer, module, final=True).name == "step_0000003.png"
    assert plain.accuracy == {} and plain.last_metrics == {}
    with pytest.raises(ConfigError, match="num_classes"):
        SampleGridCallback(tmp_path, score_digits=True)


def test_tensorboard_gets_the_png_picture_with_row_labels(tmp_path):
    from lightning.pytorch.loggers import TensorBoardLogger

    logged = []
    tensorboard = TensorBoardLogger(tmp_path / "tb")
    tensorboard._experiment = SimpleNamespace(add_image=lambda *args, **kw: logged.append((args, kw)))
    oracle = _digit_oracle()
    callback = SampleGridCallback(
        tmp_path / "grids", num_classes=10, per_class=2, sampler=lambda d: DDIMSampler(d, steps=2)
    )
    module = SimpleNamespace(ema_net=oracle, diffusion=oracle.diffusion, device=torch.device("cpu"))
    datamodule = SimpleNamespace(image_shape=(1, 16, 16))
    trainer = SimpleNamespace(global_rank=0, global_step=5, loggers=[tensorboard], datamodule=datamodule)
    png = np.array(Image.open(callback.run(trainer, module, final=True)))
    (tag, pixels, step), options = logged[0]
    assert (tag, step, options) == ("samples_none", 5, {"dataformats": "HWC"})
    np.testing.assert_array_equal(pixels, png)  # enlarged as the PNG (16x16 digits: 4 times), labelled
    assert png.shape[0] == (10 * (16 + 2) + 2) * 4 and png.shape[1] > (2 * (16 + 2) + 2) * 4


def test_guided_grids_of_a_never_trained_null_class_are_refused(tmp_path, monkeypatch, capsys):
    args = ["ddpm-train", "experiment=quickstart_conditional", "model.class_dropout=0", "trainer.max_steps=2"]
    result = run_main(args, tmp_path, monkeypatch, capsys)
    errors = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    assert result.returncode == 2 and len(errors) == 1, result.stderr[-2000:]
    assert "guidance_scales [1.0, 3.0]" in errors[0] and "model.class_dropout=0.1" in errors[0]
    assert not list(tmp_path.rglob("*.ckpt"))
