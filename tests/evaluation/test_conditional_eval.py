"""A class-conditional checkpoint (trained a few steps on labelled digits) end to end: ``ddpm-sample``
with labels and guidance, ``ddpm-eval``'s class-conditional protocol, and the diffusers export."""

from __future__ import annotations

import hydra
import numpy as np
import pytest
import torch
from hydra import compose, initialize_config_dir
from hydra.core.global_hydra import GlobalHydra

from ddpm.cli.ddpm_sample import generate_images
from ddpm.diffusion.denoiser import NULL_LABEL
from ddpm.errors import ConfigError
from ddpm.evaluation.generation import read_images
from ddpm.io.shards import ShardStore
from ddpm.sampling import DDIMSampler, iter_samples
from ddpm.sampling.guidance import GuidedSampler
from ddpm.utils.config import config_dir
from ddpm.utils.images import to_uint8
from ddpm.weights import export_checkpoint, load_model
from ddpm.weights.diffusers_unet import to_diffusers_state_dict
from tests.evaluation.helpers import write_lightning_checkpoint
from tests.evaluation.test_eval_app import eval_overrides, run_eval
from tests.helpers import TINY, compose_train, fit_checkpoint, randomize_

CONDITIONAL = ["data.class_labels=true", "model.num_classes=10", "diffusion.num_timesteps=10"]


@pytest.fixture(scope="module")
def conditional_checkpoint(tmp_path_factory):
    """Five optimizer steps of a class-conditional tiny U-Net on labelled digits (label dropout 0.1)."""
    out = tmp_path_factory.mktemp("conditional")
    overrides = [
        "trainer.max_steps=5",
        "data.batch_size=8",
        "module.warmup_steps=1",
        "module.optimizer.lr=1e-3",
    ]
    cfg = compose_train([*TINY, *CONDITIONAL, *overrides], out)
    module = hydra.utils.instantiate(cfg.module)
    before = module.net.class_embedding.weight.detach().clone()
    path = fit_checkpoint(cfg, out / "last.ckpt", module, limit_val_batches=1)
    assert not torch.equal(module.net.class_embedding.weight, before)  # the labels reached the network
    return path


def compose_sample(overrides: list[str]):
    GlobalHydra.instance().clear()
    with initialize_config_dir(str(config_dir()), version_base="1.3"):
        return compose("sample", overrides=overrides)


def _direct(path, labels: torch.Tensor, seeds: list[int], scale: float | None) -> torch.Tensor:
    loaded = load_model(path)
    sampler = DDIMSampler(loaded.diffusion, steps=3)
    sampler = sampler if scale is None else GuidedSampler(sampler, scale)
    batches = iter_samples(
        loaded.net, sampler, (1, 16, 16), seeds, batch_size=4, cond={"class_labels": labels}
    )
    return torch.cat([x for _, x in batches])


def test_ddpm_sample_with_balanced_labels_and_guidance(conditional_checkpoint, tmp_path):
    common = [f"ckpt_path={conditional_checkpoint}", "sampler=ddim", "sampler.steps=3", "progress=false"]
    common += ["num_samples=12", "batch_size=5", "save_npz=true", "device=cpu"]
    guided = generate_images(
        compose_sample([*common, "labels=balanced", "guidance_scale=2", f"output_dir={tmp_path}/g"])
    )
    data = np.load(tmp_path / "g" / "samples.npz")
    assert data["labels"].tolist() == [i % 10 for i in range(12)]
    expected = _direct(conditional_checkpoint, torch.arange(12) % 10, list(range(12)), 2.0)
    assert torch.equal(torch.from_numpy(data["arr_0"]), to_uint8(expected).permute(0, 2, 3, 1))
    # scale 0 is plain conditional sampling, bit for bit; guidance changes the images
    zero = generate_images(
        compose_sample([*common, "labels=[3,7]", "guidance_scale=0", f"output_dir={tmp_path}/z"])
    )
    plain = generate_images(compose_sample([*common, "labels=[3,7]", f"output_dir={tmp_path}/p"]))
    assert zero["labels"].tolist() == [3, 7] * 6
    assert torch.equal(zero["images"], plain["images"])
    assert not torch.equal(guided["images"], plain["images"])
    # no labels: unconditional samples (the null class)
    uncond = generate_images(compose_sample([*common, f"output_dir={tmp_path}/u"]))
    null = _direct(conditional_checkpoint, torch.full((12,), NULL_LABEL), list(range(12)), None)
    assert torch.equal(uncond["images"], null) and "labels" not in np.load(tmp_path / "u" / "samples.npz")


def test_ddpm_sample_label_errors(conditional_checkpoint, tmp_path):
    common = [f"ckpt_path={conditional_checkpoint}", "sampler=ddim", "sampler.steps=2", "progress=false"]
    with pytest.raises(ConfigError, match="needs class labels"):
        generate_images(compose_sample([*common, "guidance_scale=1", f"output_dir={tmp_path}"]))
    with pytest.raises(ConfigError, match=r"0\.\.9"):
        generate_images(compose_sample([*common, "labels=10", f"output_dir={tmp_path}"]))
    unconditional = tmp_path / "uncond.ckpt"
    write_lightning_checkpoint(unconditional, tmp_path)
    with pytest.raises(ConfigError, match="unconditional"):
        generate_images(
            compose_sample([f"ckpt_path={unconditional}", "labels=balanced", f"output_dir={tmp_path}"])
        )


def test_ddpm_eval_class_conditional_protocol(conditional_checkpoint, inception_path, tmp_path):
    extra = {"sampler": "ddim", "sampler.steps": 3, "guidance_scale": 1.5, "generation.num_samples": 12}
    extra.update({"generation.shard_size": 4, "metrics.nll.enabled": "false", "metrics.kid": "true"})
    report = run_eval(eval_overrides(conditional_checkpoint, inception_path, tmp_path / "cache", **extra),
                      tmp_path / "out")  # fmt: skip
    record = report["protocol"]["class_conditional"]
    assert record["labels"].startswith("i % num_classes") and record["guidance_scale"] == 1.5
    assert record["num_classes"] == 10 and record["per_class"] == [2, 2] + [1] * 8
    assert report["protocol"]["sampler"]["guidance_scale"] == 1.5
    assert report["protocol"]["sampler"]["sampler"]["num_steps"] == 3
    tag = "ddim3_w1.5"  # the sampler, its steps and the guidance scale: not the paper's protocol
    names = {f"fid_12_{tag}_train", f"fid_12_{tag}_test", f"is_12_{tag}_10splits", f"kid_12_{tag}_train"}
    assert names <= set(report["metrics"]) and report["expected"] == {}
    store = ShardStore(
        tmp_path / "out" / "samples", report["protocol"]["fingerprint"], 12, 4, prefix="samples"
    )
    indices, images = next(read_images(store, [1]))  # samples 4..7: seeds 4..7, labels 4..7
    expected = _direct(conditional_checkpoint, indices % 10, indices.tolist(), 1.5)
    assert torch.equal(images, to_uint8(expected))
    # another scale is another set of samples (another fingerprint), same labels
    cheap = {**extra, "guidance_scale": 0, "metrics.fid": "false", "metrics.kid": "false"}  # IS alone
    other = run_eval(eval_overrides(conditional_checkpoint, inception_path, tmp_path / "cache", **cheap),
                     tmp_path / "zero")  # fmt: skip
    assert other["protocol"]["fingerprint"] != report["protocol"]["fingerprint"]


def test_conditional_checkpoint_round_trips_through_the_diffusers_export(conditional_checkpoint, tmp_path):
    from diffusers import UNet2DModel

    folder = export_checkpoint(conditional_checkpoint, tmp_path / "pipe")
    original, back = load_model(conditional_checkpoint), load_model(folder)
    assert back.net.num_classes == 10
    ours, theirs = original.net.state_dict(), back.net.state_dict()
    assert ours.keys() == theirs.keys() and all(torch.equal(ours[k], theirs[k]) for k in ours)
    unet = UNet2DModel.from_pretrained(folder / "unet").eval()
    assert unet.config.num_class_embeds == 11
    # outputs agree for O(1) weights (the few-step checkpoint's output layers are still nearly zero)
    net = randomize_(back.net, seed=4).eval()
    unet.load_state_dict(to_diffusers_state_dict(net.state_dict(), len(net.ch_mult)))
    x, t = torch.randn(4, 1, 16, 16), torch.tensor([0, 3, 6, 9])
    with torch.no_grad():
        a = net(x, t, class_labels=torch.tensor([0, 5, 9, NULL_LABEL]))
        b = unet(x, t, class_labels=torch.tensor([0, 5, 9, 10])).sample  # 10: the null class, row K
    assert a.abs().max() > 0.1 and (a - b).abs().max() <= 1e-5
