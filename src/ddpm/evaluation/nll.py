"""Negative log-likelihood in bits/dim: the full variational bound of Ho et al. (2020), eq. 5.

For each image x_0:  L = L_T + sum_{t=2..T} L_{t-1} + L_0, with
  L_T      = KL(q(x_T | x_0) || N(0, I))                        (prior)
  L_{t-1}  = KL(q(x_{t-1} | x_t, x_0) || p_theta(x_{t-1} | x_t))  (per step, x_t ~ q(x_t | x_0))
  L_0      = -log p_theta(x_0 | x_1)                             (discretised Gaussian decoder)
every step evaluated (T network calls per image), as the official ``calc_bpd_loop``; the terms come
from :mod:`ddpm.diffusion.likelihood`. Per-timestep terms, the eps / x_0 prediction errors and the
rate-distortion curve of the paper's progressive lossy compression (Sec. 4.3, Fig. 5) are reported.

The noise of image ``i`` at every step comes from its own generator (seeded from ``seed`` and ``i``),
so the bound of an image does not depend on the batch size or on the number of ranks. Images and their
conditioning come out of each data batch through :func:`~ddpm.diffusion.denoiser.split_batch`, so a
dataset's ``(x0, cond)`` items give the bound of the model given ``cond``.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor
from torch.utils.data import DataLoader, Dataset, Subset

from ddpm.diffusion.denoiser import cond_to, split_batch
from ddpm.diffusion.gaussian import GaussianDiffusion
from ddpm.diffusion.likelihood import BoundTerms, bound_terms, rate_distortion_curve
from ddpm.io.shards import ShardStore
from ddpm.sampling import PerSampleNoise
from ddpm.utils.distributed import all_reduce_sum, barrier, rank_and_world
from ddpm.utils.progress import progress_bar
from ddpm.utils.rng import derive_seed

log = logging.getLogger(__name__)

Model = Callable[[Tensor, Tensor], Tensor]


def nll_seeds(seed: int, indices: Sequence[int]) -> list[int]:
    """Per-image noise seeds of the bound (a stream separate from sampling's)."""
    return [derive_seed("nll", int(seed), int(i)) for i in indices]


_SUM_NAMES = ("count", "total", "total_sq", "prior", "terms", "eps_mse", "x0_mse")


class NLLStatistics:
    """Float64 sums over images of the bound and its terms; ``reduced()`` sums over ranks."""

    def __init__(self, num_timesteps: int, device: torch.device | str = "cpu") -> None:
        zeros = lambda *shape: torch.zeros(*shape, dtype=torch.float64, device=device)
        self.count, self.total, self.total_sq, self.prior = zeros(()), zeros(()), zeros(()), zeros(())
        self.terms, self.eps_mse, self.x0_mse = (
            zeros(num_timesteps),
            zeros(num_timesteps),
            zeros(num_timesteps),
        )

    def tensors(self) -> list[Tensor]:
        return [self.count, self.total, self.total_sq, self.prior, self.terms, self.eps_mse, self.x0_mse]

    def load_tensors(self, tensors: Sequence[Tensor]) -> NLLStatistics:
        (self.count, self.total, self.total_sq, self.prior, self.terms, self.eps_mse, self.x0_mse) = (
            t.to(torch.float64) for t in tensors
        )
        return self

    def update(self, b: BoundTerms) -> None:
        total = b.total.to(self.total.device)
        self.count += total.shape[0]
        self.total += total.sum()
        self.total_sq += (total**2).sum()
        self.prior += b.prior.to(self.prior.device).sum()
        self.terms += b.terms.to(self.terms.device).sum(0)
        self.eps_mse += b.eps_mse.to(self.terms.device).sum(0)
        self.x0_mse += b.x0_mse.to(self.terms.device).sum(0)

    def arrays(self) -> dict[str, np.ndarray]:
        """The sums as named float64 arrays (one NLL shard)."""
        return {name: t.cpu().numpy() for name, t in zip(_SUM_NAMES, self.tensors())}

    @classmethod
    def from_arrays(cls, arrays: dict[str, np.ndarray]) -> NLLStatistics:
        stats = cls(int(arrays["terms"].shape[0]))
        return stats.load_tensors([torch.from_numpy(arrays[name]) for name in _SUM_NAMES])

    def add(self, other: NLLStatistics) -> NLLStatistics:
        self.load_tensors([a + b.to(a.device) for a, b in zip(self.tensors(), other.tensors())])
        return self

    def reduced(self) -> NLLStatistics:
        return NLLStatistics(self.terms.shape[0], self.terms.device).load_tensors(
            all_reduce_sum(self.tensors())
        )

    @property
    def num(self) -> int:
        return round(float(self.count))

    def summary(self) -> dict[str, Any]:
        """Bits/dim of the bound (mean over images), its terms, and the rate-distortion curve
        (:func:`~ddpm.diffusion.likelihood.rate_distortion_curve`).

        ``rate_bpd[k]``: bits sent once x_{k+1} (paper index) is known: L_T + sum_{j>k} L_j;
        ``distortion_rmse[k]``: RMSE of the x_0 prediction from x_{k+1} on the [0, 255] scale.
        """
        n = self.count
        if self.num < 1:
            raise ValueError("no images were evaluated")
        mean = self.total / n
        var = (self.total_sq / n - mean**2).clamp(min=0)
        terms = self.terms / n
        prior = self.prior / n
        rate, distortion = rate_distortion_curve(prior, terms, self.x0_mse / n)
        return {
            "num_images": self.num,
            "bpd": float(mean),
            "bpd_stderr": float((var / (n - 1)).sqrt()) if self.num > 1 else math.nan,
            "prior_bpd": float(prior),
            "decoder_bpd": float(terms[0]),
            "diffusion_kl_bpd": float(terms[1:].sum()),
            "timesteps": list(range(1, terms.shape[0] + 1)),
            "terms_bpd": terms.tolist(),
            "eps_mse": (self.eps_mse / n).tolist(),
            "x0_mse": (self.x0_mse / n).tolist(),
            "rate_bpd": rate.tolist(),
            "distortion_rmse": distortion.tolist(),
        }


@dataclass(frozen=True)
class NLLSettings:
    """Which images of which split, in which batches and shards (``ddpm-eval``'s ``metrics.nll``)."""

    split: str = "test"
    num_images: int | None = None
    batch_size: int = 64
    shard_size: int = 500
    clip_denoised: bool = True
    seed: int = 0
    num_workers: int = 0


@torch.no_grad()
def _accumulate(
    model: Model,
    diffusion: GaussianDiffusion,
    dataset: Dataset,
    indices: Sequence[int],
    settings: NLLSettings,
    device: torch.device,
    bar: Any = None,
) -> NLLStatistics:
    """The bound's sums over the images ``indices`` of ``dataset``."""
    stats = NLLStatistics(diffusion.num_timesteps, device)
    loader = DataLoader(
        Subset(dataset, list(indices)), batch_size=settings.batch_size, num_workers=settings.num_workers
    )
    start = 0
    for batch in loader:
        x0, cond = split_batch(batch)
        x0 = x0.to(device, torch.float32)
        noise = PerSampleNoise(nll_seeds(settings.seed, indices[start : start + x0.shape[0]]), device)
        start += x0.shape[0]
        terms = bound_terms(
            model, diffusion, x0, noise, clip_denoised=settings.clip_denoised, cond=cond_to(cond, device)
        )
        stats.update(terms)
        if bar is not None:
            bar.update(x0.shape[0])
    return stats


def _num_images(dataset: Dataset, settings: NLLSettings) -> int:
    total = len(dataset)  # type: ignore[arg-type]
    return total if settings.num_images is None else min(int(settings.num_images), total)


def dataset_nll(
    model: Model,
    diffusion: GaussianDiffusion,
    dataset: Dataset,
    settings: NLLSettings,
    device: torch.device | str = "cpu",
    progress: bool = False,
) -> NLLStatistics:
    """The bound on the first ``settings.num_images`` images of ``dataset`` (all by default), over ranks."""
    rank, world = rank_and_world()
    indices = list(range(rank, _num_images(dataset, settings), world))
    with progress_bar(total=len(indices), enabled=progress and rank == 0, description="NLL") as bar:
        stats = _accumulate(
            model, diffusion, dataset, indices, settings=settings, device=torch.device(device), bar=bar
        )
    return stats.reduced()


def _check_sums(items: range, arrays: dict[str, np.ndarray]) -> None:
    if round(float(arrays["count"])) != len(items):
        raise ValueError(f"the sums cover {float(arrays['count'])} images instead of {len(items)}")


def nll_store(folder: str | Path, fingerprint: str, num_images: int, shard_size: int) -> ShardStore:
    """The resumable store of NLL sums, one ``nll_XXXXX.npz`` per shard of ``shard_size`` images."""
    return ShardStore(folder, fingerprint, num_images, shard_size, prefix="nll", check=_check_sums)


def dataset_nll_resumable(
    model: Model,
    diffusion: GaussianDiffusion,
    dataset: Dataset,
    folder: str | Path,
    *,
    fingerprint: str,
    settings: NLLSettings,
    device: torch.device | str = "cpu",
    progress: bool = False,
) -> NLLStatistics:
    """As :func:`dataset_nll`, keeping the sums of every shard of images in a :class:`ShardStore`.

    A rerun with the same ``fingerprint`` skips finished shards. The result is the sum of the shards in
    shard order (read back by every rank), so it is bit-identical whatever the interruptions or ranks.
    """
    rank, world = rank_and_world()
    store = nll_store(folder, fingerprint, _num_images(dataset, settings), settings.shard_size)
    todo = store.missing(store.shards_of_rank(rank, world))
    total = sum(len(store.ranges[s]) for s in todo)
    with progress_bar(total=total, enabled=progress and rank == 0 and total > 0, description="NLL") as bar:
        for shard in todo:
            stats = _accumulate(
                model,
                diffusion,
                dataset,
                store.ranges[shard],
                settings=settings,
                device=torch.device(device),
                bar=bar,
            )
            store.write(shard, stats.arrays())
    barrier()
    result = NLLStatistics(diffusion.num_timesteps)
    for _, arrays in store.iter_shards(range(store.num_shards)):
        result.add(NLLStatistics.from_arrays(arrays))
    return result
