"""`ddpm-train experiment=image_folder data.path=DIR`: the model follows the data (size, channels), the
recipe is the small-data one, grids use a fast sampler with a progress bar, and one-key changes work."""

from __future__ import annotations

import hydra
import torch
from omegaconf import OmegaConf

from ddpm.cli.ddpm_train import check_shapes
from tests.helpers import compose_train


def built_shapes(cfg) -> tuple[tuple[int, int, int], tuple[int, int, int]]:
    """(C, H, W) of the data and of the network the config builds (on the meta device: no weights)."""
    data = hydra.utils.instantiate(cfg.data)
    with torch.device("meta"):
        net = hydra.utils.instantiate(cfg.model)
    check_shapes(net, data.image_shape, 1)
    return tuple(data.image_shape), (net.in_channels, net.resolution, net.resolution)


def test_the_model_follows_the_images_size_and_channels(tmp_path):
    base = ["experiment=image_folder", f"data.path={tmp_path}"]
    assert built_shapes(compose_train(base, tmp_path)) == ((3, 32, 32), (3, 32, 32))
    gray = compose_train([*base, "data.grayscale=true", "data.image_size=16"], tmp_path)
    assert built_shapes(gray) == ((1, 16, 16), (1, 16, 16))
    resolved = OmegaConf.to_container(gray, resolve=True)["model"]  # what checkpoints store
    assert (resolved["in_channels"], resolved["out_channels"], resolved["resolution"]) == (1, 1, 16)
    big = compose_train(["data=image_folder", f"data.path={tmp_path}", "model=unet_cifar10"], tmp_path)
    assert (big.model.in_channels, big.model.resolution) == (3, 64)  # any model follows data.image_size
    learned = compose_train([*base, "data.grayscale=true", "diffusion.var_type=learned_range"], tmp_path)
    assert learned.model.out_channels == 2  # out_channels follows the variance and now the data too


def test_the_recipe_is_the_small_data_one_and_its_grids_are_fast(tmp_path):
    cfg = compose_train(["experiment=image_folder", f"data.path={tmp_path}"], tmp_path)
    assert cfg.module.warmup_steps == 100 and cfg.module.ema_decay == 0.99
    assert cfg.module.optimizer.lr == 2e-3 and cfg.diffusion.schedule == "cosine"
    grid = cfg.callbacks.sample_grid
    assert (
        grid.show_progress and grid.sampler.steps == 50 and grid.sampler._target_.endswith("AncestralSampler")
    )
    assert cfg.trainer.accelerator == "auto"  # the same command on a GPU machine uses the GPU
    assert (cfg.data.num_workers, cfg.data.pin_memory, cfg.data.val_fraction) == (None, None, 0.05)


def test_the_digits_and_cifar10_keep_their_models(tmp_path):
    digits = compose_train([], tmp_path)  # the default run: digits on unet_tiny
    assert (digits.model.in_channels, digits.model.resolution) == (1, digits.data.image_size)
    cifar = compose_train(["experiment=ddpm_cifar10"], tmp_path)
    assert (cifar.model.in_channels, cifar.model.resolution) == (3, 32)
