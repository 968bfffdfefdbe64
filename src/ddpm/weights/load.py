"""Load a model to sample or evaluate: our Lightning checkpoints (EMA weights by default) or released ones."""

from __future__ import annotations

import logging
from pathlib import Path

import torch

from ddpm.diffusion.gaussian import GaussianDiffusion
from ddpm.errors import CheckpointError, ConfigError
from ddpm.io.checkpoint_file import CLASS_DROPOUT_KEY, is_lightning_checkpoint, read_checkpoint
from ddpm.lightning.restore import checkpoint_config, module_from_checkpoint
from ddpm.models.shape import image_shape_of
from ddpm.weights.diffusers_folder import is_diffusers_folder, load_diffusers_folder
from ddpm.weights.loaded import LoadedModel
from ddpm.weights.released import load_pesser_state_dict

log = logging.getLogger(__name__)

RAW_WEIGHTS_NOTE = (
    "raw (non-EMA) weights: expect a much worse FID than the paper's (about 12 vs 3.2 on CIFAR-10)"
)


def with_var_type(diffusion: GaussianDiffusion, var_type: str | None) -> GaussianDiffusion:
    """The same forward process sampled with another fixed reverse variance (``None``: unchanged)."""
    if not var_type or var_type == diffusion.var_type:
        return diffusion
    if diffusion.var_type.startswith("learned") or var_type.startswith("learned"):
        raise ConfigError(
            f"var_type={var_type} cannot replace the model's {diffusion.var_type}: a learned variance is "
            "part of the network's output; drop var_type=..."
        )
    betas = diffusion.betas.detach().cpu()
    return GaussianDiffusion(mean_type=diffusion.mean_type, var_type=var_type, betas=betas)  # type: ignore[arg-type]


def trained_class_dropout(checkpoint: dict, net: torch.nn.Module) -> float | None:
    """A class-conditional network's label dropout in training (None for an unconditional one).

    ``ddpm-train`` records it (:data:`~ddpm.io.checkpoint_file.CLASS_DROPOUT_KEY`); a checkpoint written
    before that has none, and the rebuilt network's own ``class_dropout`` is read instead: it comes from
    the stored config that built the trained network, or where the config omits it from the U-Net's
    default, 0.1 since class conditioning was introduced (commit 70cf088), so it is the trained value too.
    """
    if not getattr(net, "num_classes", 0):
        return None
    recorded = checkpoint.get(CLASS_DROPOUT_KEY)
    return float(net.class_dropout if recorded is None else recorded)


def load_lightning_checkpoint(
    path: str | Path, use_ema: bool = True, checkpoint: dict | None = None, var_type: str | None = None
) -> LoadedModel:
    """Rebuild the LightningModule from the checkpoint's ``ddpm_config`` and take its EMA (or raw) network.

    ``checkpoint``: the file's already loaded contents (so a large file is read once).
    """
    if checkpoint is None:
        checkpoint = read_checkpoint(path)
    module = module_from_checkpoint(checkpoint, path)
    config = checkpoint_config(checkpoint, path)
    net = (module.ema_net if use_ema else module.net).eval()
    notes = [] if use_ema else [RAW_WEIGHTS_NOTE]
    if notes:
        log.warning("Evaluating the raw weights of %s: %s", path, notes[-1])
    shape = image_shape_of(net, config.get("model"))
    weights = "ema" if use_ema else "raw"
    diffusion = with_var_type(module.diffusion, var_type)
    return LoadedModel(
        net,
        diffusion,
        shape,
        str(path),
        "lightning",
        weights=weights,
        config=config,
        notes=notes,
        class_dropout=trained_class_dropout(checkpoint, net),
    )


def load_model(
    path: str | Path, preset: str | None = None, use_ema: bool = True, var_type: str | None = None
) -> LoadedModel:
    """Any supported checkpoint: a diffusers folder, one of our ``.ckpt`` files, or a pesser state dict."""
    path = Path(path).expanduser()
    if not path.exists():
        raise CheckpointError(f"checkpoint {path} does not exist: check the path")
    if path.is_dir():
        if not is_diffusers_folder(path):
            raise CheckpointError(
                f"{path} is a directory without config.json or unet/config.json: not a diffusers model folder"
            )
        return load_diffusers_folder(path, preset, var_type)
    contents = read_checkpoint(path)
    if is_lightning_checkpoint(contents):
        if preset is not None:
            log.warning("pretrained=%s is ignored: our checkpoints store their own config", preset)
        return load_lightning_checkpoint(path, use_ema, checkpoint=contents, var_type=var_type)
    return load_pesser_state_dict(path, preset, var_type=var_type, state_dict=contents)


__all__ = ["load_lightning_checkpoint", "load_model"]
