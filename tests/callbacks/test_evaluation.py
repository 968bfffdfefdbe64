"""The in-training FID / IS and NLL callbacks on one process (under DDP: evaluation/test_distributed.py)."""

import functools
import json

import pytest
import torch
from lightning.pytorch.loggers import CSVLogger

from ddpm.callbacks import evaluation as evaluation_callbacks
from ddpm.callbacks.evaluation import FIDCallback
from ddpm.callbacks.nll import NLLCallback
from ddpm.diffusion import GaussianDiffusion
from ddpm.lightning import DDPMLitModule
from tests.evaluation.helpers import FakeDataModule
from tests.helpers import quiet_trainer, tiny_unet
from tests.metrics.helpers import StubExtractor


@pytest.fixture
def stub_inception(monkeypatch):
    """The callbacks' Inception replaced by a cheap stand-in (the real one in evaluation/test_distributed)."""
    extractor = StubExtractor()
    monkeypatch.setattr(evaluation_callbacks, "load_inception", lambda *args, **kwargs: extractor)
    # the start-up check of the weights file (the stand-in needs none)
    monkeypatch.setattr(evaluation_callbacks, "resolve_inception_weights", lambda *args, **kwargs: None)
    return extractor


def _fit(tmp_path, callbacks, max_steps=2):
    module = DDPMLitModule(
        tiny_unet(3, 8),
        GaussianDiffusion(num_timesteps=8),
        optimizer=functools.partial(torch.optim.Adam, lr=1e-3),
        warmup_steps=0,
    )
    trainer = quiet_trainer(
        devices=1,
        max_steps=max_steps,
        limit_val_batches=0,
        logger=CSVLogger(tmp_path, name="csv", version=""),
        callbacks=callbacks,
    )
    trainer.fit(module, datamodule=FakeDataModule(n_train=16, n_test=6))
    return trainer, module


def test_fid_callback_logs_protocol_named_metrics(tmp_path, stub_inception):
    callback = FIDCallback(
        every_n_steps=2,
        num_samples=10,
        batch_size=4,
        metrics={"num_reference_images": 6, "cache_dir": tmp_path / "cache"},
    )
    trainer, module = _fit(tmp_path, [callback])
    names = {
        "eval/fid_10_ancestral8_train",
        "eval/fid_10_ancestral8_test",
        "eval/is_10_ancestral8_10splits",
        "eval/is_10_ancestral8_1split",
    }
    assert set(callback.last_metrics) == names
    assert names <= set(trainer.callback_metrics)
    assert all(torch.isfinite(trainer.callback_metrics[n]) for n in names)
    assert len(list((tmp_path / "cache").glob("*.pt"))) == 2  # train and test reference statistics
    # the same EMA weights and seed give the same numbers when evaluated again
    again = callback.evaluate(trainer, module, log=False)
    assert again == pytest.approx(callback.last_metrics, rel=1e-9)


def test_callbacks_show_progress_while_they_sample(tmp_path, stub_inception, monkeypatch):
    from ddpm.evaluation import nll as nll_module
    from ddpm.utils.progress import progress_bar

    bars = []

    def recorded(*args, **kwargs):
        bars.append((progress_bar(*args, **kwargs), kwargs.get("enabled", True)))
        return bars[-1][0]

    monkeypatch.setattr(evaluation_callbacks, "progress_bar", recorded)
    monkeypatch.setattr(nll_module, "progress_bar", recorded)
    protocol = {"reference_splits": ("test",)}
    fid_callback = FIDCallback(every_n_steps=0, num_samples=4, batch_size=2, metrics=protocol, at_end=True)
    nll_callback = NLLCallback(every_n_steps=0, num_images=2, batch_size=2, at_end=True)
    _fit(tmp_path, [fid_callback, nll_callback], max_steps=1)
    shown = {bar.desc: (bar.n, bar.total) for bar, enabled in bars if enabled}
    assert shown == {"FID samples (step 1)": (4, 4), "NLL": (2, 2)}


def test_callbacks_at_end_write_to_the_loggers(tmp_path, stub_inception):
    fid_callback = FIDCallback(
        every_n_steps=0, num_samples=4, batch_size=4, metrics={"reference_splits": ("test",)}, at_end=True
    )
    nll_callback = NLLCallback(
        every_n_steps=0, num_images=2, batch_size=2, at_end=True, output_dir=tmp_path / "nll"
    )
    _fit(tmp_path, [fid_callback, nll_callback], max_steps=1)
    logged = (tmp_path / "csv" / "metrics.csv").read_text().splitlines()[0].split(",")
    assert "eval/fid_4_ancestral8_test" in logged and "eval/nll_bpd_2_test" in logged
    saved = json.loads((tmp_path / "nll" / "nll_step_0000001.json").read_text())
    assert saved["step"] == 1 and len(saved["terms_bpd"]) == 8 and saved["num_images"] == 2


class RecordingExtractor(StubExtractor):
    """The stand-in Inception, keeping the generated (uint8) images it is shown; references are float."""

    def __init__(self) -> None:
        super().__init__()
        self.samples: list[torch.Tensor] = []

    def forward(self, images):
        if images.dtype == torch.uint8:
            self.samples.append(images.detach().cpu())
        return super().forward(images)


def test_fid_callback_on_a_class_conditional_model_samples_labels_i_mod_k(tmp_path, monkeypatch):
    """``callbacks=eval_fid`` on labelled digits (its real config): ddpm-eval's class-conditional protocol
    (sample i asks for class i % 10), and names that say so."""
    from ddpm.cli.ddpm_train import train
    from ddpm.diffusion.denoiser import LABELS_KEY
    from ddpm.evaluation.generation import generate
    from ddpm.sampling import DDIMSampler
    from tests.helpers import TINY, compose_train, randomize_

    extractor = RecordingExtractor()
    monkeypatch.setattr(evaluation_callbacks, "load_inception", lambda *args, **kwargs: extractor)
    monkeypatch.setattr(evaluation_callbacks, "resolve_inception_weights", lambda *args, **kwargs: None)
    fid = {"num_samples": 12, "batch_size": 5, "sampler.steps": 3, "every_n_steps": 0}
    fid |= {"metrics.num_reference_images": 4, "metrics.cache_dir": tmp_path / "cache"}
    overrides = [*TINY, "data.class_labels=true", "model.num_classes=10", "diffusion.num_timesteps=10"]
    overrides += ["trainer.max_steps=1", "callbacks=eval_fid", "~callbacks.sample_grid", "logger=csv"]
    cfg = compose_train([*overrides, *(f"callbacks.fid.{k}={v}" for k, v in fid.items())], tmp_path)
    _, objects = train(cfg)  # the callback evaluates at the end of training

    trainer, module = objects["trainer"], objects["module"]
    callback = next(cb for cb in trainer.callbacks if isinstance(cb, FIDCallback))
    names = {f"eval/fid_12_ddim3_cond_{s}" for s in ("train", "test")}  # 'cond': class-conditional
    names |= {"eval/is_12_ddim3_cond_10splits", "eval/is_12_ddim3_cond_1split"}
    assert set(callback.last_metrics) == names
    assert names <= set((tmp_path / "csv" / "metrics.csv").read_text().splitlines()[0].split(","))

    # The samples are ddpm-eval's: seed i, class i % 10 (on weights whose output depends on the class:
    # one training step leaves the zero-initialised output layer nearly zero)
    randomize_(module.ema_net, seed=1)
    extractor.samples.clear()
    callback.evaluate(trainer, module, log=False)
    sampler, net, shape = DDIMSampler(module.diffusion, steps=3), module.ema_net.eval(), (1, 16, 16)
    labels = {LABELS_KEY: torch.arange(12) % 10}
    expected = generate(net, sampler, shape, range(12), seed=0, batch_size=5, cond=labels)
    sampled = torch.cat(extractor.samples)
    assert torch.equal(sampled, torch.cat([x for _, x in expected]))
    unconditional = generate(net, sampler, shape, range(12), seed=0, batch_size=5)
    assert not torch.equal(sampled, torch.cat([x for _, x in unconditional]))  # the labels matter


def test_fid_callback_takes_precision_recall_in_vgg16_space_from_a_second_pass(
    tmp_path, stub_inception, monkeypatch
):
    from ddpm.metrics.kid_pr import precision_recall

    second = RecordingExtractor()  # stands in for VGG-16 (the real one: test_vgg16_pr.py)
    second.name, second.feature_space = "vgg16", "stub_fc"
    monkeypatch.setattr(evaluation_callbacks, "load_vgg16", lambda *args, **kwargs: second)
    monkeypatch.setattr(evaluation_callbacks, "resolve_vgg16_weights", lambda *args, **kwargs: None)
    metrics = {"num_reference_images": 5, "cache_dir": tmp_path / "cache", "reference_splits": ("test",)}
    metrics |= {"kid": True, "precision_recall": True, "pr_features": "vgg16", "pr_neighbours": 2}
    callback = FIDCallback(every_n_steps=0, num_samples=6, batch_size=4, metrics=metrics, at_end=True)
    _fit(tmp_path, [callback], max_steps=1)
    names = {f"eval/{m}_6_ancestral8_test" for m in ("fid", "kid", "precision_vgg16", "recall_vgg16")}
    assert set(callback.last_metrics) == names | {"eval/is_6_ancestral8_1split"}
    images = torch.cat(second.samples)  # the samples, kept as uint8 for the second pass
    assert images.shape == (6, 3, 8, 8)
    real = second(FakeDataModule(n_train=16, n_test=6).val_set.images[:5])[0]
    precision, recall = precision_recall(second(images)[0], real, k=2)
    assert callback.last_metrics["eval/precision_vgg16_6_ancestral8_test"] == pytest.approx(
        precision, abs=1e-9
    )
    assert callback.last_metrics["eval/recall_vgg16_6_ancestral8_test"] == pytest.approx(recall, abs=1e-9)
    assert list((tmp_path / "cache").glob("*-stub_fc-features.pt"))  # cached beside the statistics
