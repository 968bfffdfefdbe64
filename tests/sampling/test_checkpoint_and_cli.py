"""load_module (the shared checkpoint loader), the sampler configs and the ddpm-sample app."""

from __future__ import annotations

from pathlib import Path

import hydra
import numpy as np
import pytest
import torch
from hydra import compose, initialize_config_dir
from hydra.core.global_hydra import GlobalHydra
from omegaconf import OmegaConf

from ddpm.cli.ddpm_sample import generate_images as sample_app
from ddpm.diffusion import GaussianDiffusion
from ddpm.errors import CheckpointError, ConfigError
from ddpm.io.checkpoint_file import read_checkpoint
from ddpm.lightning.module import DDPMLitModule
from ddpm.lightning.restore import checkpoint_config, load_module
from ddpm.sampling import PerSampleNoise, make_sampler, sampler_names
from ddpm.sampling.registry import sampler_config, sampler_settings
from ddpm.utils.config import config_dir
from tests.helpers import run_cli
from tests.sampling.helpers import TinyNet


def test_load_module_restores_the_trained_module(tiny_checkpoint):
    module = load_module(tiny_checkpoint)
    assert isinstance(module, DDPMLitModule)
    assert not module.training
    state = torch.load(tiny_checkpoint, map_location="cpu", weights_only=False)["state_dict"]
    for name, value in module.state_dict().items():
        assert torch.equal(value, state[name]), name
    config = checkpoint_config(
        read_checkpoint(tiny_checkpoint), tiny_checkpoint
    )  # written by RunConfigCallback
    assert config["module"]["_target_"] == "ddpm.lightning.DDPMLitModule"
    assert module.diffusion.num_timesteps == 100


def _one_line_error(path: Path, match: str) -> None:
    with pytest.raises(CheckpointError, match=match) as info:
        load_module(path)
    assert "\n" not in str(info.value)


def test_load_module_errors_are_one_line(tiny_checkpoint, tmp_path):
    _one_line_error(tmp_path / "missing.ckpt", "does not exist")
    corrupt = tmp_path / "corrupt.ckpt"
    corrupt.write_bytes(tiny_checkpoint.read_bytes()[:1000])
    _one_line_error(corrupt, "truncated or corrupt")
    checkpoint = torch.load(tiny_checkpoint, map_location="cpu", weights_only=False)
    no_config = tmp_path / "no_config.ckpt"
    torch.save({k: v for k, v in checkpoint.items() if k != "ddpm_config"}, no_config)
    _one_line_error(no_config, "not written by ddpm-train")
    not_lightning = tmp_path / "weights.pt"
    torch.save({"conv.weight": torch.zeros(1)}, not_lightning)
    _one_line_error(not_lightning, "no state_dict")
    mismatch = tmp_path / "mismatch.ckpt"
    bad = dict(checkpoint)
    bad["ddpm_config"] = {**checkpoint["ddpm_config"]}
    bad["ddpm_config"]["module"] = {**bad["ddpm_config"]["module"]}
    bad["ddpm_config"]["module"]["net"] = {**bad["ddpm_config"]["module"]["net"], "ch": 64}
    torch.save(bad, mismatch)
    _one_line_error(mismatch, "do not fit")


@pytest.mark.parametrize("name", sorted(p.stem for p in (config_dir() / "sampler").glob("*.yaml")))
def test_every_sampler_config_builds_a_working_sampler(name):
    """Each `sampler=<name>` is a factory ``sampler(diffusion)`` as used by the callback and ddpm-sample."""
    GlobalHydra.instance().clear()
    with initialize_config_dir(str(config_dir()), version_base="1.3"):
        cfg = compose("sample", overrides=[f"sampler={name}", "ckpt_path=x"])
    d = GaussianDiffusion(num_timesteps=100)
    sampler = hydra.utils.instantiate(cfg.sampler)(d)
    out = sampler.sample(TinyNet().eval(), (1, 4, 4), PerSampleNoise([0, 1]), "cpu")
    assert out.shape == (2, 1, 4, 4) and torch.isfinite(out).all()


SAMPLER_CONFIGS = sorted(p.stem for p in (config_dir() / "sampler").glob("*.yaml"))


def _sampler_config(name: str):
    """configs/sampler/<name>.yaml composed on its own (with its defaults list)."""
    GlobalHydra.instance().clear()
    with initialize_config_dir(str(config_dir() / "sampler"), version_base="1.3"):
        return compose(name)


def _settings(sampler) -> dict:
    """A sampler's attributes, tensors as lists and the diffusion by identity: comparable with ==."""
    out = {}
    for key, value in vars(sampler).items():
        if isinstance(value, torch.Tensor):
            value = value.tolist()
        elif isinstance(value, torch.nn.Module):
            value = (type(value).__name__, value.betas.tolist())
        out[key] = value
    return out


def test_registry_and_sampler_configs_name_the_same_samplers():
    assert sampler_names() == SAMPLER_CONFIGS
    with pytest.raises(ConfigError, match="unknown sampler 'euler': choose one of ancestral, ") as info:
        make_sampler("euler", GaussianDiffusion(num_timesteps=10))
    assert all(name in str(info.value) for name in SAMPLER_CONFIGS)


@pytest.mark.parametrize("name", SAMPLER_CONFIGS)
def test_registry_and_sampler_config_build_the_same_sampler(name):
    """``sampler=<name>`` (Hydra) and ``make_sampler("<name>")`` (Python) are one sampler, same defaults."""
    cfg = _sampler_config(name)
    cls, defaults = sampler_settings(name)
    assert OmegaConf.to_container(cfg) == sampler_config(name)  # its defaults list merged as Hydra does
    assert {k: v for k, v in OmegaConf.to_container(cfg).items() if not k.startswith("_")} == defaults
    d = GaussianDiffusion(num_timesteps=100)
    from_config = hydra.utils.instantiate(cfg)(d)
    from_registry = make_sampler(name, d)
    assert type(from_config) is type(from_registry) is cls
    assert _settings(from_config) == _settings(from_registry)
    assert make_sampler(name.replace("_", "-"), d).timesteps == from_registry.timesteps


def compose_sample(overrides: list[str]):
    GlobalHydra.instance().clear()
    with initialize_config_dir(str(config_dir()), version_base="1.3"):
        return compose("sample", overrides=overrides)


def test_ddpm_sample_writes_png_and_npz_reproducibly(tiny_checkpoint, tmp_path):
    common = [f"ckpt_path={tiny_checkpoint}", "sampler=ddim", "sampler.steps=5", "progress=false"]
    cfg = compose_sample(
        [*common, "num_samples=6", "batch_size=4", "save_npz=true", f"output_dir={tmp_path}/a"]
    )
    result = sample_app(cfg)
    assert (tmp_path / "a" / "samples.png").is_file()
    data = np.load(tmp_path / "a" / "samples.npz")
    assert data["arr_0"].shape == (6, 16, 16, 1) and data["arr_0"].dtype == np.uint8
    assert data["seeds"].tolist() == list(range(6))
    # image i depends on seed i only
    cfg = compose_sample(
        [*common, "num_samples=3", "seed=3", "save_png=false", "save_npz=true", f"output_dir={tmp_path}/b"]
    )
    again = sample_app(cfg)
    assert torch.allclose(result["images"][3:], again["images"], atol=1e-6)
    with pytest.raises(ConfigError, match="nothing to write"):
        sample_app(compose_sample([*common, "save_png=false", f"output_dir={tmp_path}/c"]))


def test_ddpm_sample_defaults_to_the_sampler_the_run_was_trained_with(tiny_checkpoint, tmp_path, caplog):
    from ddpm.cli.ddpm_sample import own_sampler_settings

    common = [f"ckpt_path={tiny_checkpoint}", "num_samples=2", "progress=false", "save_png=false"]
    common.append("save_npz=true")
    stored = checkpoint_config(read_checkpoint(tiny_checkpoint), tiny_checkpoint)["sampler"]
    assert stored["_target_"] == "ddpm.sampling.AncestralSampler" and stored["steps"] is None
    # the command line: no sampler named -> the run's own, with the settings it gives
    cfg = compose_sample([*common, "sampler.steps=7", f"output_dir={tmp_path}/own"])
    assert own_sampler_settings(cfg, [*common, "sampler.steps=7"]) == {"steps": 7}
    assert own_sampler_settings(cfg, [*common, "sampler=ddim", "sampler.steps=7"]) is None
    with caplog.at_level("INFO", logger="ddpm.cli.ddpm_sample"):
        own = sample_app(cfg, own_sampler={"steps": 7})
    assert "the one the run was trained with, with {'steps': 7}" in caplog.text
    ancestral = compose_sample([*common, "sampler=ancestral", "sampler.steps=7", f"output_dir={tmp_path}/a"])
    ddim = compose_sample([*common, "sampler=ddim", "sampler.steps=7", f"output_dir={tmp_path}/ddim"])
    assert torch.equal(own["images"], sample_app(ancestral)["images"])
    assert not torch.equal(own["images"], sample_app(ddim)["images"])
    with pytest.raises(ConfigError, match="sampler.eta is not a setting of the run's sampler"):
        sample_app(cfg, own_sampler={"eta": 0.5})


def test_a_stored_sampler_is_built_only_through_the_allowlist(tiny_checkpoint):
    from types import SimpleNamespace

    from ddpm.cli.ddpm_sample import sampler_factory
    from ddpm.io.stored_config import StoredConfigError

    cfg = compose_sample([f"ckpt_path={tiny_checkpoint}"])
    stored = {"sampler": {"_target_": "os.system", "_args_": ["true"]}}
    loaded = SimpleNamespace(config=stored, source="x.ckpt")
    with pytest.raises(StoredConfigError, match="sampler._target_ = os.system is not a class of this"):
        sampler_factory(cfg, loaded, {})
    loaded.config = None  # weights without a run config (a diffusers folder): the config's DDIM
    built = sampler_factory(cfg, loaded, {})(GaussianDiffusion(num_timesteps=100))
    assert type(built).__name__ == "DDIMSampler"


@pytest.mark.slow
def test_ddpm_sample_compiled_equals_eager(tiny_checkpoint, tmp_path):
    common = [f"ckpt_path={tiny_checkpoint}", "sampler=ddim", "sampler.steps=4", "progress=false"]
    common += ["num_samples=4", "batch_size=4"]
    eager = sample_app(compose_sample([*common, f"output_dir={tmp_path}/eager"]))
    compiled = sample_app(compose_sample([*common, "compile=true", f"output_dir={tmp_path}/compiled"]))
    torch.testing.assert_close(compiled["images"], eager["images"], rtol=0, atol=1e-4)


def test_ddpm_sample_cli(tiny_checkpoint, tmp_path):
    proc = run_cli(
        [
            "ddpm-sample",
            f"ckpt_path={tiny_checkpoint}",
            "sampler=dpm_solver_pp_2m",
            "sampler.steps=4",
            "num_samples=4",
            f"hydra.run.dir={tmp_path}/run",
        ],
        tmp_path,
        env={"OMP_NUM_THREADS": "1"},
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert (tmp_path / "run" / "samples.png").is_file()
    assert "Sampler: ddpm.sampling.DPMSolverPPSampler (sampler=<name>)" in proc.stdout  # the log
    # no sampler named: the run's own (ancestral), with the steps given
    own = ["ddpm-sample", f"ckpt_path={tiny_checkpoint}", "sampler.steps=3", "num_samples=2"]
    proc = run_cli([*own, f"hydra.run.dir={tmp_path}/own"], tmp_path, env={"OMP_NUM_THREADS": "1"})
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "AncestralSampler" in proc.stdout and "with {'steps': 3} from the command line" in proc.stdout
    missing = run_cli(
        ["ddpm-sample", f"ckpt_path={tmp_path}/nope.ckpt", f"hydra.run.dir={tmp_path}/run2"], tmp_path
    )
    assert missing.returncode == 2
    assert "error: checkpoint" in missing.stderr and "Traceback" not in missing.stderr
