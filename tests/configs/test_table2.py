"""Every cell of the DDPM paper's Table 2 is a Hydra experiment that composes and trains on the CPU."""

from __future__ import annotations

from pathlib import Path

import hydra
import pytest
import torch

from ddpm.diffusion.losses import HybridLoss, SimpleLoss, VLBLoss
from ddpm.diffusion.timestep_sampler import LossAwareTimestepSampler
from ddpm.evaluation.paper_numbers import TABLE2 as PAPER_TABLE2
from ddpm.utils.config import config_dir
from tests.helpers import TINY, compose_train, run_cli

# experiment -> (mean_type, var_type, loss class, paper IS / FID)
TABLE2 = {
    "table2_mu_vlb_learned": ("mu", "learned", VLBLoss, "7.28±0.10 / 23.69"),
    "table2_mu_vlb_fixed": ("mu", "fixed_large", VLBLoss, "8.06±0.09 / 13.22"),
    "table2_mu_mse": ("mu", "fixed_large", SimpleLoss, "– / –"),
    "table2_eps_vlb_learned": ("eps", "learned", VLBLoss, "– / –"),
    "table2_eps_vlb_fixed": ("eps", "fixed_large", VLBLoss, "7.67±0.13 / 13.51"),
    "table2_eps_simple": ("eps", "fixed_large", SimpleLoss, "9.46±0.11 / 3.17"),
}


def test_every_table2_cell_has_an_experiment_and_the_sweep_lists_them_all(tmp_path):
    files = sorted(p.stem for p in (config_dir() / "experiment").glob("table2_*.yaml"))
    assert files == sorted(TABLE2)
    for name, (*_, paper) in TABLE2.items():
        text = (config_dir() / "experiment" / f"{name}.yaml").read_text()
        assert f'paper_numbers.TABLE2["{name}"]' in text, name  # the config points at the one table
        numbers = [float(tok) for tok in paper.replace("±", " ").replace("/", " ").split() if tok != "–"]
        published = PAPER_TABLE2[name]
        assert numbers == [published[k] for k in ("is", "is_std", "fid") if k in published], name
    cfg = compose_train(["hparams_search=table2"], tmp_path)
    swept = str(cfg_hydra_sweep(tmp_path)).split(",")
    assert swept == list(TABLE2), swept
    del cfg


def cfg_hydra_sweep(tmp_path: Path) -> str:
    from hydra import compose, initialize_config_dir
    from hydra.core.global_hydra import GlobalHydra

    GlobalHydra.instance().clear()
    with initialize_config_dir(str(config_dir()), version_base="1.3"):
        cfg = compose("train", overrides=["hparams_search=table2"], return_hydra_config=True)
    assert cfg.hydra.mode.name == "MULTIRUN"
    return cfg.hydra.sweeper.params.experiment


@pytest.mark.parametrize("name", list(TABLE2))
def test_table2_experiment_composes_to_the_paper_setting(name, tmp_path):
    mean_type, var_type, loss_cls, _ = TABLE2[name]
    cfg = compose_train([f"experiment={name}"], tmp_path)
    assert cfg.diffusion.mean_type == mean_type and cfg.diffusion.var_type == var_type
    assert cfg.diffusion.schedule == "linear" and cfg.diffusion.num_timesteps == 1000
    assert cfg.module.loss._target_.endswith(loss_cls.__name__)
    assert cfg.model.out_channels == (6 if var_type == "learned" else 3)
    assert cfg.data._target_.endswith("CIFAR10DataModule")
    assert cfg.trainer.max_steps == 800000 and cfg.global_batch_size == 128
    assert cfg.module.optimizer.lr == 2.0e-4 and cfg.module.ema_decay == 0.9999


@pytest.mark.parametrize("name", list(TABLE2))
def test_table2_experiment_runs_a_few_cpu_steps(name, tmp_path):
    from ddpm.cli.ddpm_train import train

    mean_type, var_type, loss_cls, _ = TABLE2[name]
    out_channels = 2 if var_type == "learned" else 1
    cfg = compose_train(
        [
            f"experiment={name}",
            *TINY,
            f"model.out_channels={out_channels}",
            "global_batch_size=null",
            "data.batch_size=8",
            "trainer.max_steps=2",
            "trainer.val_check_interval=2",
        ],
        tmp_path,
    )
    result = train(cfg)
    metrics, objects = result if isinstance(result, tuple) else (result, None)
    assert torch.isfinite(torch.tensor(metrics["train/loss"]))
    assert torch.isfinite(torch.tensor(metrics["val/loss_ema"]))
    if objects is not None:
        module = objects["module"]
        assert isinstance(module.loss_fn, loss_cls)
        assert module.diffusion.mean_type == mean_type and module.diffusion.var_type == var_type
        assert module.trainer.global_step == 2


@pytest.mark.parametrize(
    ("overrides", "loss_cls"),
    [
        (["module=ddpm_hybrid", "diffusion=improved", "model.out_channels=2"], HybridLoss),
        (["module=ddpm_vlb_importance", "diffusion=linear_learned_range", "model.out_channels=2"], VLBLoss),
        (["module=ddpm_vlb", "diffusion=cosine", "diffusion.mean_type=x0"], VLBLoss),
    ],
)
def test_variant_configs_instantiate(overrides, loss_cls, tmp_path):
    cfg = compose_train([*TINY, *overrides], tmp_path)
    module = hydra.utils.instantiate(cfg.module)
    assert isinstance(module.loss_fn, loss_cls)
    if "importance" in overrides[0]:
        assert isinstance(module.loss_fn.timestep_sampler, LossAwareTimestepSampler)
        assert module.loss_fn.timestep_sampler.num_timesteps == module.diffusion.num_timesteps == 100
        assert "loss_fn.timestep_sampler.loss_history" in module.state_dict()
    x0 = torch.rand(2, 1, 16, 16) * 2 - 1
    assert module.loss_fn(module.net, module.diffusion, x0, torch.Generator().manual_seed(0)).shape == (2,)


def test_improved_ddpm_experiment_composes(tmp_path):
    cfg = compose_train(["experiment=improved_ddpm_cifar10"], tmp_path)
    assert cfg.diffusion.schedule == "cosine" and cfg.diffusion.var_type == "learned_range"
    assert cfg.module.loss._target_.endswith("HybridLoss") and cfg.module.loss.lambda_vlb == 0.001
    assert cfg.model.out_channels == 6
    cfg = compose_train(["experiment=improved_ddpm_cifar10", *TINY, "model.out_channels=2"], tmp_path)
    module = hydra.utils.instantiate(cfg.module)
    x0 = torch.rand(2, 1, 16, 16) * 2 - 1
    module.loss_fn(module.net, module.diffusion, x0, torch.Generator().manual_seed(0)).mean().backward()


@pytest.mark.slow
def test_table2_multirun_command(tmp_path):
    """The documented one-liner on fake CIFAR-10 with a small U-Net: six jobs, one per cell, all train."""
    from tests.data.fakes import write_fake_cifar10

    root = write_fake_cifar10(tmp_path / "cifar10", n_train_per_batch=4, n_test=8)
    args = ["ddpm-train", "-m", "hparams_search=table2"]
    args += [
        "data=cifar10",
        "model=unet_cifar10",
        f"data.data_dir={root}",
        "data.download=false",
        "data.num_workers=0",
        "data.persistent_workers=false",
    ]
    args += ["global_batch_size=8", "model.ch=32", "model.ch_mult=[1,2]", "model.num_res_blocks=1"]
    args += [
        "diffusion.num_timesteps=50",
        "trainer=cpu",
        "trainer.max_steps=1",
        "trainer.val_check_interval=1",
    ]
    args += [
        "trainer.limit_val_batches=1",
        "trainer.enable_progress_bar=false",
        "callbacks=none",
        "logger=none",
    ]
    args += [f"hydra.sweep.dir={tmp_path}/sweep"]
    proc = run_cli(args, tmp_path, timeout=1200)
    assert proc.returncode == 0, proc.stderr[-3000:]
    jobs = sorted(p.name for p in (tmp_path / "sweep").iterdir() if p.is_dir() and p.name.isdigit())
    assert jobs == [str(i) for i in range(6)], jobs
