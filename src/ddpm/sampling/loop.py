"""The one sampling loop: :func:`iter_samples` (batches of images from per-image seeds) and :func:`sample`.

    from ddpm.sampling import iter_samples, sample
    images = sample(model, diffusion, shape=(3, 32, 32), num_samples=64, sampler="ddim", steps=50)
    images = sample(model, diffusion, (3, 32, 32), seeds=range(1000, 1064), sampler="dpm_solver_pp_2m")
    for seeds, images in iter_samples(model, sampler, (3, 32, 32), range(50_000), batch_size=500):
        ...  # write them away

Image i depends only on its seed (its own :class:`~ddpm.sampling.noise.PerSampleNoise` generator),
whatever the batch size. Every other sampling path of the project (``ddpm-sample``, ``ddpm-eval``'s
generation) goes through :func:`iter_samples`. Sampler names: :mod:`ddpm.sampling.registry`.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Any

import torch
from torch import Tensor
from tqdm.auto import tqdm

from ddpm.diffusion.denoiser import Cond, Model, cond_slice, cond_to
from ddpm.diffusion.gaussian import GaussianDiffusion
from ddpm.errors import ConfigError
from ddpm.sampling.base import Sampler
from ddpm.sampling.noise import PerSampleNoise
from ddpm.sampling.registry import make_sampler
from ddpm.utils.progress import progress_bar


class CountingModel:
    """``model`` that advances ``bar`` by the batch size on every call (one unit = one image's call)."""

    def __init__(self, model: Model, bar: tqdm) -> None:
        self.model = model
        self.bar = bar

    def __call__(self, x_t: Tensor, t: Tensor, **cond: Tensor) -> Tensor:
        out = self.model(x_t, t, **cond)
        self.bar.update(x_t.shape[0])
        return out


@contextmanager
def eval_mode(model: Model) -> Iterator[None]:
    """Put an ``nn.Module`` in eval mode for the block and restore its mode afterwards (others: no-op)."""
    if not isinstance(model, torch.nn.Module):
        yield
        return
    was_training = model.training
    model.eval()
    try:
        yield
    finally:
        model.train(was_training)


def _check_cond(cond: Cond | None, num_images: int) -> None:
    for key, value in (cond or {}).items():
        if value.shape[0] != num_images:
            raise ConfigError(f"cond[{key!r}] has {value.shape[0]} rows but {num_images} seeds were given")


def iter_samples(
    model: Model,
    sampler: Sampler,
    shape: Sequence[int],
    seeds: Sequence[int],
    *,
    batch_size: int,
    device: torch.device | str = "cpu",
    cond: Cond | None = None,
    progress: bool = False,
) -> Iterator[tuple[list[int], Tensor]]:
    """Yield ``(batch_seeds, images)`` for consecutive batches of ``seeds``.

    Image i is drawn with ``PerSampleNoise([seeds[i]])``, so it depends on its seed alone. ``images``
    are float32 [b, *shape] on the CPU, in model space [-1, 1] (the samplers clip x_0 when
    ``clip_denoised``). ``cond`` holds per-image tensors aligned with ``seeds``; each batch gets its
    slice on ``device``. ``progress`` shows one bar over images x network calls (``sampler.num_steps``
    per image), so its ETA covers the whole run. An ``nn.Module`` model is in eval mode while it runs.
    """
    seeds = [int(s) for s in seeds]
    if int(batch_size) < 1:
        raise ConfigError(f"batch_size must be >= 1, got {batch_size}")
    _check_cond(cond, len(seeds))
    device, shape = torch.device(device), tuple(int(v) for v in shape)
    # a guided sampler sends 2 rows per image through each network call (ddpm.sampling.guidance)
    total = len(seeds) * sampler.num_steps * int(getattr(sampler, "rows_per_image", 1))
    bar = progress_bar(enabled=progress, description="network calls x images", total=total, leave=True)
    call = CountingModel(model, bar) if progress else model
    try:
        for start in range(0, len(seeds), int(batch_size)):
            batch = seeds[start : start + int(batch_size)]
            batch_cond = cond_to(cond_slice(cond, start, start + len(batch)), device)
            with eval_mode(model), torch.no_grad():
                x = sampler.sample(call, shape, PerSampleNoise(batch, device), device, cond=batch_cond)
            bar.set_postfix_str(f"images {start + len(batch)}/{len(seeds)}")
            yield batch, x.float().cpu()
    finally:
        bar.close()


def _resolve_seeds(num_samples: int | None, seeds: Sequence[int] | None, seed: int) -> list[int]:
    """``seeds``, or ``seed .. seed + num_samples - 1``; both given, they must agree."""
    if seeds is None:
        if num_samples is None:
            raise ConfigError("give num_samples or seeds")
        seeds = range(seed, seed + num_samples)
    seeds = [int(s) for s in seeds]
    if num_samples is not None and num_samples != len(seeds):
        raise ConfigError(f"num_samples={num_samples} but {len(seeds)} seeds were given")
    return seeds


def sample(
    model: Model,
    diffusion: GaussianDiffusion,
    shape: Sequence[int],
    num_samples: int | None = None,
    *,
    sampler: str | Sampler = "ddim",
    seeds: Sequence[int] | None = None,
    seed: int = 0,
    batch_size: int | None = None,
    device: torch.device | str = "cpu",
    progress: bool = False,
    cond: Cond | None = None,
    **settings: Any,
) -> Tensor:
    """Draw images [N, *shape] (float32, CPU) from ``model`` with the named (or a ready-made) sampler.

    Args:
        model: the model call ``model(x_t, t, **cond)`` (e.g. ``module.ema_net``).
        diffusion: the GaussianDiffusion the model was trained with.
        shape: (C, H, W) of one image.
        num_samples: N; with ``seeds`` it defaults to ``len(seeds)``.
        sampler: a sampler name (:func:`~ddpm.sampling.registry.sampler_names`) or a sampler object.
        seeds: per-image seeds (image i is a function of ``seeds[i]`` alone); default ``seed + i``.
        batch_size: images per network call (default: all at once).
        device: where to sample.
        progress: show a progress bar over all images and network calls.
        cond: per-image conditioning tensors aligned with the seeds (leading dim N).
        **settings: sampler settings, e.g. ``steps=50, eta=0.0, spacing="quadratic", clip_denoised=True``.
    """
    if isinstance(sampler, str):
        sampler = make_sampler(sampler, diffusion, **settings)
    elif settings:
        raise ConfigError(
            "sampler settings were given together with a ready-made sampler: pass one or the other"
        )
    seeds = _resolve_seeds(num_samples, seeds, seed)
    batches = iter_samples(
        model,
        sampler,
        shape,
        seeds,
        batch_size=batch_size or max(len(seeds), 1),
        device=device,
        cond=cond,
        progress=progress,
    )
    images = [x for _, x in batches]
    return torch.cat(images) if images else torch.empty((0, *shape))


__all__ = ["CountingModel", "eval_mode", "iter_samples", "sample"]
