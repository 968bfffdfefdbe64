"""ddpm-export: ours -> diffusers folder -> ours is bit-exact, and diffusers' DDPMPipeline samples the
exported model exactly like our ancestral sampler (same initial and per-step noise)."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from types import SimpleNamespace
from typing import ClassVar

import numpy as np
import pytest
import torch
from safetensors.torch import load_file

from ddpm.errors import ConfigError, DDPMError
from ddpm.sampling import AncestralSampler, PerSampleNoise
from ddpm.weights import export_checkpoint, load_model
from ddpm.weights.export import hub_module, push_to_hub, write_diffusers_folder
from tests.evaluation.helpers import write_lightning_checkpoint
from tests.helpers import run_cli, run_main

VARIANTS = {
    "eps_fixed_large": [],
    "v_fixed_large": ["diffusion.mean_type=v"],
    "x0_fixed_small": [
        "diffusion.mean_type=x0",
        "diffusion.var_type=fixed_small",
        "sampler.clip_denoised=false",
    ],
    "eps_learned_range_cosine": [
        "diffusion=linear_learned_range",
        "module=ddpm_hybrid",
        "diffusion.schedule=cosine",
    ],
}


def _checkpoint(tmp_path: Path, overrides: list[str]) -> Path:
    path = tmp_path / "last.ckpt"
    write_lightning_checkpoint(path, tmp_path / "run", overrides)
    return path


def _assert_same_model(a, b) -> None:
    sa, sb = a.net.state_dict(), b.net.state_dict()
    assert sa.keys() == sb.keys()
    for key in sa:
        assert torch.equal(sa[key], sb[key]), key
    assert torch.equal(a.diffusion.betas, b.diffusion.betas)
    assert (a.diffusion.mean_type, a.diffusion.var_type) == (b.diffusion.mean_type, b.diffusion.var_type)
    assert a.image_shape == b.image_shape


@pytest.mark.parametrize("variant", VARIANTS)
@pytest.mark.parametrize("use_ema", [True, False], ids=["ema", "raw"])
def test_round_trip_ours_diffusers_ours_is_bit_exact(tmp_path, variant, use_ema):
    ckpt = _checkpoint(tmp_path, VARIANTS[variant])
    folder = export_checkpoint(ckpt, tmp_path / "pipe", use_ema=use_ema)
    original, back = load_model(ckpt, use_ema=use_ema), load_model(folder)
    _assert_same_model(original, back)
    assert back.kind == "diffusers"
    scheduler = json.loads((folder / "scheduler" / "scheduler_config.json").read_text())
    assert scheduler["_ddpm_export"]["weights"] == ("ema" if use_ema else "raw")
    assert scheduler["clip_sample"] is (variant != "x0_fixed_small")  # the run's sampler.clip_denoised


def test_schedules_without_a_diffusers_name_travel_as_trained_betas(tmp_path):
    ckpt = _checkpoint(tmp_path, ["diffusion.schedule=quadratic"])
    folder = export_checkpoint(ckpt, tmp_path / "pipe")
    scheduler = json.loads((folder / "scheduler" / "scheduler_config.json").read_text())
    assert (scheduler["beta_schedule"], scheduler["trained_betas"]) == ("scaled_linear", None)
    _assert_same_model(load_model(ckpt), load_model(folder))
    loaded = load_model(ckpt)
    loaded.diffusion = type(loaded.diffusion)(betas=loaded.diffusion.betas * 0.5)  # a custom schedule
    custom = write_diffusers_folder(loaded, tmp_path / "custom")
    scheduler = json.loads((custom / "scheduler" / "scheduler_config.json").read_text())
    assert len(scheduler["trained_betas"]) == 10
    assert torch.equal(load_model(custom).diffusion.betas, loaded.diffusion.betas)


def test_released_weights_export_too(tmp_path):
    """Any source load_model reads: here a diffusers folder, exported again unchanged."""
    first = export_checkpoint(_checkpoint(tmp_path, ["diffusion.var_type=fixed_small"]), tmp_path / "a")
    second = export_checkpoint(first, tmp_path / "b")
    for name in ("model_index.json", "unet/config.json", "unet/diffusion_pytorch_model.safetensors"):
        assert (first / name).read_bytes() == (second / name).read_bytes(), name
    scheduler = json.loads((second / "scheduler" / "scheduler_config.json").read_text())
    assert scheduler["variance_type"] == "fixed_small"  # the run's, kept through the first export
    assert scheduler["_ddpm_export"]["source_kind"] == "diffusers"
    _assert_same_model(load_model(first), load_model(second))


def test_the_folder_is_what_diffusers_expects(tmp_path):
    diffusers = pytest.importorskip("diffusers")
    folder = export_checkpoint(_checkpoint(tmp_path, []), tmp_path / "pipe")
    assert sorted(str(p.relative_to(folder)) for p in folder.rglob("*") if p.is_file()) == [
        "model_index.json",
        "scheduler/scheduler_config.json",
        "unet/config.json",
        "unet/diffusion_pytorch_model.safetensors",
    ]
    config = json.loads((folder / "unet" / "config.json").read_text())
    expected = diffusers.UNet2DModel.from_config(config).state_dict()
    tensors = load_file(str(folder / "unet" / "diffusion_pytorch_model.safetensors"))
    assert tensors.keys() == expected.keys()
    assert all(tensors[k].shape == expected[k].shape for k in tensors)
    scheduler = diffusers.DDPMScheduler.from_pretrained(folder, subfolder="scheduler")
    assert scheduler.config.num_train_timesteps == 10 and scheduler.config.variance_type == "fixed_large"
    assert scheduler.config.prediction_type == "epsilon" and scheduler.config.clip_sample is True
    torch.testing.assert_close(scheduler.betas, torch.linspace(1e-4, 0.02, 10))


class RecordingNoise:
    """A NoiseSource that keeps every draw, to replay them into diffusers."""

    def __init__(self, seeds: list[int]) -> None:
        self.inner = PerSampleNoise(seeds)
        self.batch_size = self.inner.batch_size
        self.draws: list[torch.Tensor] = []

    def randn(self, shape, device, dtype) -> torch.Tensor:
        z = self.inner.randn(shape, device, dtype)
        self.draws.append(z.clone())
        return z


def _replay(draws: list[torch.Tensor]):
    queue = iter(draws)

    def randn_tensor(shape, generator=None, device=None, dtype=None, layout=None):
        z = next(queue)
        assert tuple(z.shape) == tuple(shape)
        return z.to(device=device, dtype=dtype)

    return randn_tensor, queue


@pytest.mark.parametrize("variant", VARIANTS)
def test_ddpm_pipeline_samples_the_exported_model_like_our_ancestral_sampler(tmp_path, monkeypatch, variant):
    diffusers = pytest.importorskip("diffusers")
    from diffusers.pipelines.ddpm import pipeline_ddpm
    from diffusers.schedulers import scheduling_ddpm

    ckpt = _checkpoint(tmp_path, VARIANTS[variant])
    loaded = load_model(ckpt)
    clip = variant != "x0_fixed_small"
    noise = RecordingNoise([0, 1, 2])
    sampler = AncestralSampler(loaded.diffusion, clip_denoised=clip)
    ours = sampler.sample(loaded.net, loaded.image_shape, noise)
    assert len(noise.draws) == 10  # x_T, then one draw per step t = 9..1

    pipeline = diffusers.DDPMPipeline.from_pretrained(export_checkpoint(ckpt, tmp_path / "pipe"))
    randn_tensor, queue = _replay(noise.draws)
    monkeypatch.setattr(pipeline_ddpm, "randn_tensor", randn_tensor)
    monkeypatch.setattr(scheduling_ddpm, "randn_tensor", randn_tensor)
    images = pipeline(batch_size=3, num_inference_steps=10, output_type="np").images
    assert next(queue, None) is None  # the same number of draws, used in the same order

    expected = (ours / 2 + 0.5).clamp(0, 1).permute(0, 2, 3, 1).numpy()
    # not saturated, so that the comparison means something
    assert ((expected > 0.01) & (expected < 0.99)).mean() > 0.2
    np.testing.assert_allclose(images, expected, rtol=0, atol=1e-4)


@pytest.mark.parametrize(
    ("overrides", "match"),
    [
        (["diffusion.mean_type=mu"], "mean_type=mu .* no diffusers prediction_type"),
        (["diffusion.var_type=learned", "module=ddpm_vlb"], "var_type=learned .* no diffusers variance_type"),
    ],
)
def test_models_diffusers_cannot_express_are_refused(tmp_path, overrides, match):
    ckpt = _checkpoint(tmp_path, overrides)
    with pytest.raises(ConfigError, match=match):
        export_checkpoint(ckpt, tmp_path / "pipe")
    assert not (tmp_path / "pipe").exists()


def test_an_existing_folder_is_never_overwritten(tmp_path):
    ckpt = _checkpoint(tmp_path, [])
    (tmp_path / "empty").mkdir()
    export_checkpoint(ckpt, tmp_path / "empty")  # an empty directory is taken
    before = (tmp_path / "empty" / "unet" / "config.json").read_bytes()
    with pytest.raises(ConfigError, match="not empty; refusing to overwrite"):
        export_checkpoint(ckpt, tmp_path / "empty", use_ema=False)
    assert (tmp_path / "empty" / "unet" / "config.json").read_bytes() == before
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []  # no temporary folder left


def test_export_cli_writes_then_refuses_in_one_line(tmp_path, monkeypatch, capsys):
    ckpt = _checkpoint(tmp_path, [])
    before = set(tmp_path.iterdir())
    args = ["ddpm-export", f"ckpt_path={ckpt}", f"output_dir={tmp_path}/pipe"]
    env = {"OMP_NUM_THREADS": "1"}
    first = run_cli(args, tmp_path, env=env)
    assert first.returncode == 0, first.stderr[-2000:]
    assert (tmp_path / "pipe" / "unet" / "diffusion_pytorch_model.safetensors").is_file()
    assert set(tmp_path.iterdir()) - before == {tmp_path / "pipe"}  # no logs/export/runs/<time>/, no log file
    again = run_main(args, tmp_path, monkeypatch, capsys)  # the console script's main, in this process
    assert again.returncode == 2 and "Traceback" not in again.stderr
    errors = [line for line in again.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and "refusing to overwrite" in errors[0]


def test_export_cli_refuses_a_mu_model_in_one_line(tmp_path, monkeypatch, capsys):
    ckpt = _checkpoint(tmp_path, ["diffusion.mean_type=mu"])
    args = ["ddpm-export", f"ckpt_path={ckpt}", f"output_dir={tmp_path}/pipe", f"hydra.run.dir={tmp_path}/h"]
    result = run_main(args, tmp_path, monkeypatch, capsys)
    assert result.returncode == 2 and "Traceback" not in result.stderr
    errors = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and "mean_type=mu" in errors[0]
    assert not (tmp_path / "pipe").exists()


def test_export_task_names_missing_keys(tmp_path):
    from hydra import compose, initialize_config_dir
    from hydra.core.global_hydra import GlobalHydra

    from ddpm.cli.ddpm_export import USAGE
    from ddpm.cli.task_wrapper import check_required
    from ddpm.utils.config import config_dir

    GlobalHydra.instance().clear()
    with initialize_config_dir(str(config_dir()), version_base="1.3"):
        cfg = compose("export", overrides=[f"output_dir={tmp_path / 'pipe'}"])
    with pytest.raises(ConfigError, match="missing ckpt_path: ddpm-export ckpt_path="):
        check_required(cfg, USAGE)  # run_task checks before the task starts


def test_push_to_hub_needs_huggingface_hub(monkeypatch):
    monkeypatch.setitem(sys.modules, "huggingface_hub", None)  # import fails as if not installed
    with pytest.raises(ConfigError, match="pip install huggingface_hub"):
        hub_module()


class _FakeApi:
    calls: ClassVar[list] = []
    fail = False

    def create_repo(self, **kwargs):
        self.calls.append(("create_repo", kwargs))

    def upload_folder(self, **kwargs):
        if self.fail:
            raise OSError("no network\nsecond line")
        self.calls.append(("upload_folder", kwargs))
        return SimpleNamespace(commit_url="https://huggingface.co/me/ddpm/commit/abc")


def test_push_to_hub_uploads_the_folder_without_network(tmp_path):
    hub = SimpleNamespace(HfApi=_FakeApi)
    _FakeApi.calls, _FakeApi.fail = [], False
    assert push_to_hub(tmp_path, "me/ddpm", hub=hub).endswith("/commit/abc")
    assert _FakeApi.calls[0] == ("create_repo", {"repo_id": "me/ddpm", "private": True, "exist_ok": True})
    assert _FakeApi.calls[1][1]["folder_path"] == str(tmp_path)
    _FakeApi.fail = True
    with pytest.raises(DDPMError, match="push_to_hub=me/ddpm failed .*no network") as info:
        push_to_hub(tmp_path, "me/ddpm", hub=hub)
    assert "\n" not in str(info.value)
