"""A class-conditional export is a pipeline diffusers loads from the folder and samples with labels and
guidance, giving ``ddpm-sample``'s images for the same noise (per-image generators seeded as ours)."""

from __future__ import annotations

import importlib.metadata
import json
from pathlib import Path

import numpy as np
import pytest
import torch

from ddpm.cli.ddpm_sample import generate_images
from ddpm.utils.rng import derive_seed
from ddpm.weights import export_checkpoint
from tests.evaluation.helpers import write_lightning_checkpoint
from tests.evaluation.test_conditional_eval import CONDITIONAL, compose_sample

diffusers = pytest.importorskip("diffusers")

LABELS = [3, 7, 0, 9]


@pytest.fixture(scope="module")
def exported(tmp_path_factory) -> tuple[Path, Path]:
    """A tiny class-conditional checkpoint (T = 10, label dropout 0.1) and its exported folder."""
    tmp = tmp_path_factory.mktemp("conditional_export")
    ckpt = tmp / "last.ckpt"
    write_lightning_checkpoint(ckpt, tmp / "run", CONDITIONAL)
    return ckpt, export_checkpoint(ckpt, tmp / "pipe")


def _pipeline(folder: Path):
    pipe = diffusers.DiffusionPipeline.from_pretrained(folder, trust_remote_code=True)
    pipe.set_progress_bar_config(disable=True)
    return pipe


def test_the_folder_names_its_pipeline_and_the_installed_diffusers(exported):
    _, folder = exported
    index = json.loads((folder / "model_index.json").read_text())
    assert index["_class_name"] == ["pipeline_ddpm_conditional", "DDPMConditionalPipeline"]
    assert index["_diffusers_version"] == importlib.metadata.version("diffusers")
    assert index["null_class_trained"] is True
    pipe = _pipeline(folder)
    assert type(pipe).__name__ == "DDPMConditionalPipeline" and pipe.config.null_class_trained is True
    assert isinstance(pipe.scheduler, diffusers.DDPMScheduler)


@pytest.mark.parametrize("w", [None, 0.0, 2.0], ids=["no_guidance", "w0", "w2"])
def test_diffusers_samples_like_ddpm_sample(exported, tmp_path, w):
    ckpt, folder = exported
    overrides = [f"ckpt_path={ckpt}", "sampler=ancestral", "progress=false", "device=cpu", "seed=5"]
    overrides += [f"num_samples={len(LABELS)}", f"labels=[{','.join(map(str, LABELS))}]"]
    overrides += [f"output_dir={tmp_path}"] + ([] if w is None else [f"guidance_scale={w}"])
    ours = generate_images(compose_sample(overrides))["images"]
    # ddpm-sample's image i draws from its own generator, seeded derive_seed("sample", seed + i)
    generators = [torch.Generator().manual_seed(derive_seed("sample", 5 + i)) for i in range(len(LABELS))]
    scale = 1.0 if w is None else 1.0 + w  # diffusers' guidance_scale s = 1 + w
    theirs = _pipeline(folder)(
        class_labels=LABELS,
        guidance_scale=scale,
        generator=generators,
        num_inference_steps=10,
        output_type="np",
    ).images
    expected = (ours / 2 + 0.5).clamp(0, 1).permute(0, 2, 3, 1).numpy()
    if w:  # guidance moves the images 50 times the tolerance below and more
        plain = compose_sample([*overrides[:-2], f"output_dir={tmp_path}/plain"])
        assert (ours - generate_images(plain)["images"]).abs().max() > 5e-4
    assert ((expected > 0.01) & (expected < 0.99)).mean() > 0.2  # not saturated: the comparison counts
    np.testing.assert_allclose(theirs, expected, rtol=0, atol=1e-5)  # float rounding: about 2e-6


def _sample(pipe, scale: float, labels=LABELS) -> np.ndarray:
    generators = [torch.Generator().manual_seed(i) for i in range(len(labels))]
    kwargs = {"guidance_scale": scale, "generator": generators, "num_inference_steps": 10}
    return pipe(labels, output_type="np", **kwargs).images


def test_guidance_changes_the_images_and_an_untrained_null_class_is_refused(exported, tmp_path):
    pipe = _pipeline(exported[1])
    assert np.abs(_sample(pipe, 1.0) - _sample(pipe, 3.0)).max() > 3e-4
    assert _sample(pipe, 1.0, [-1, 2]).shape == (2, 16, 16, 1)  # -1: the null class
    with pytest.raises(ValueError, match=r"class_labels must be in 0\.\.9"):
        _sample(pipe, 1.0, [10])
    with pytest.raises(ValueError, match="guidance_scale must be >= 0"):
        _sample(pipe, -0.5)
    untrained = tmp_path / "ckpt"
    write_lightning_checkpoint(untrained, tmp_path / "run", [*CONDITIONAL, "model.class_dropout=0"])
    pipe = _pipeline(export_checkpoint(untrained, tmp_path / "untrained"))
    with pytest.raises(ValueError, match="class_dropout=0"):
        _sample(pipe, 2.0)
    with pytest.raises(ValueError, match="class_dropout=0"):
        _sample(pipe, 1.0, [-1, 2])
    assert _sample(pipe, 1.0).shape == (4, 16, 16, 1)  # plain conditional sampling needs no null class


def test_an_unconditional_export_stays_a_ddpm_pipeline(tmp_path):
    ckpt = tmp_path / "last.ckpt"
    write_lightning_checkpoint(ckpt, tmp_path / "run")
    folder = export_checkpoint(ckpt, tmp_path / "pipe")
    index = json.loads((folder / "model_index.json").read_text())
    assert index["_class_name"] == "DDPMPipeline" and "null_class_trained" not in index
    assert not (folder / "pipeline_ddpm_conditional.py").exists()
