"""Every experiment composes and instantiates; the paper configs build the paper's models."""

import hydra
import pytest
import torch
from omegaconf import OmegaConf

from ddpm.utils.config import config_dir
from tests.helpers import compose_train

EXPERIMENTS = sorted(p.stem for p in (config_dir() / "experiment").glob("*.yaml"))
# the keys an experiment needs from its user (constructing a DataModule checks no path)
USER_KEYS = {"image_folder": ["data.path=my_images"]}
PAPER_PARAMS = {
    "ddpm_cifar10": 35_746_307,
    "ddpm_lsun_church": 113_673_219,
    "ddpm_lsun_bedroom": 113_673_219,
    "ddpm_lsun_cat": 113_673_219,
}


def test_default_config_needs_no_download(tmp_path):
    cfg = compose_train([], tmp_path)
    assert cfg.data._target_.endswith("DigitsDataModule")
    assert cfg.trainer.accelerator == "cpu"


@pytest.mark.parametrize("experiment", EXPERIMENTS)
def test_experiment_composes_and_builds(experiment, tmp_path):
    cfg = compose_train([f"experiment={experiment}", *USER_KEYS.get(experiment, [])], tmp_path)
    # build the module on the meta device: instant, and nothing is trained
    with torch.device("meta"):
        module = hydra.utils.instantiate(cfg.module)
    n_params = sum(p.numel() for p in module.net.parameters())
    if experiment in PAPER_PARAMS:
        assert n_params == PAPER_PARAMS[experiment]
    hydra.utils.instantiate(cfg.data)  # constructing a DataModule must not download anything
    for node in ("callbacks", "logger"):
        for sub in (cfg.get(node) or {}).values():
            assert "_target_" in sub


def test_cifar10_experiment_is_the_paper_recipe(tmp_path):
    cfg = compose_train(["experiment=ddpm_cifar10"], tmp_path)
    assert cfg.global_batch_size == 128
    assert cfg.trainer.max_steps == 800_000
    assert cfg.trainer.gradient_clip_val == 1.0
    assert cfg.module.optimizer.lr == 2e-4 and cfg.module.optimizer.eps == 1e-8
    assert cfg.module.warmup_steps == 5000 and cfg.module.ema_decay == 0.9999
    assert cfg.model.dropout == 0.1 and list(cfg.model.ch_mult) == [1, 2, 2, 2]
    assert cfg.diffusion.var_type == "fixed_large" and cfg.diffusion.num_timesteps == 1000
    assert cfg.data.random_flip is True


def test_lsun_experiments_use_fixed_small_and_lr_2e5(tmp_path):
    for name in ("ddpm_lsun_church", "ddpm_lsun_bedroom"):
        cfg = compose_train([f"experiment={name}"], tmp_path)
        assert cfg.diffusion.var_type == "fixed_small"
        assert cfg.module.optimizer.lr == 2e-5
        assert cfg.global_batch_size == 64


@pytest.mark.parametrize("experiment", EXPERIMENTS)
def test_out_channels_follow_the_variance(experiment, tmp_path):
    """model.out_channels is derived: in_channels, doubled for a learned variance (mean + variance)."""
    cfg = compose_train([f"experiment={experiment}", *USER_KEYS.get(experiment, [])], tmp_path)
    factor = 2 if cfg.diffusion.var_type in ("learned", "learned_range") else 1
    assert cfg.model.out_channels == cfg.model.in_channels * factor
    # the run config stored in checkpoints holds the resolved number
    assert OmegaConf.to_container(cfg, resolve=True)["model"]["out_channels"] == cfg.model.out_channels


def test_out_channels_resolver_follows_overrides_and_standalone_model_configs(tmp_path):
    cfg = compose_train(["data.image_size=16", "model.in_channels=3", "diffusion=improved"], tmp_path)
    assert cfg.model.out_channels == 6
    cfg = compose_train(["diffusion=improved", "model.out_channels=5"], tmp_path)
    assert cfg.model.out_channels == 5  # an explicit value still wins
    for name in ("unet_tiny", "unet_cifar10", "unet_lsun256"):
        alone = OmegaConf.load(config_dir() / "model" / f"{name}.yaml")  # e.g. the benchmarks
        assert alone.out_channels == alone.in_channels  # no diffusion: the paper's fixed variance


def test_paper_runs_track_fid_in_the_loop_and_one_key_switches_it_off(tmp_path):
    for name in ("ddpm_cifar10", "ddpm_lsun_church", "table2_eps_vlb_fixed", "improved_ddpm_cifar10"):
        fid = compose_train([f"experiment={name}"], tmp_path).callbacks.fid
        assert fid._target_.endswith("FIDCallback") and fid.at_end and fid.sampler.steps == 100
        assert fid.metrics.inception_weights is None  # the one FID/IS settings config (metrics/fid_is)
    lsun = compose_train(["experiment=ddpm_lsun_church"], tmp_path).callbacks.fid
    assert list(lsun.metrics.reference_splits) == ["train"] and lsun.num_samples == 5000
    off = compose_train(["experiment=ddpm_cifar10", "callbacks=default"], tmp_path)
    assert "fid" not in off.callbacks and "model_checkpoint" in off.callbacks
