"""Negative log-likelihood in bits/dim: the full variational bound of Ho et al. (2020), eq. 5.

For each image x_0:  L = L_T + sum_{t=2..T} L_{t-1} + L_0, with
  L_T      = KL(q(x_T | x_0) || N(0, I))                        (prior)
  L_{t-1}  = KL(q(x_{t-1} | x_t, x_0) || p_theta(x_{t-1} | x_t))  (per step, x_t ~ q(x_t | x_0))
  L_0      = -log p_theta(x_0 | x_1)                             (discretised Gaussian decoder)
every step evaluated (T network calls per image), as the official ``calc_bpd_loop``; the terms come
from :mod:`ddpm.diffusion.likelihood`. Per-timestep terms, the eps / x_0 prediction errors and the
rate-distortion curve of the paper's progressive lossy compression (Sec. 4.3, Fig. 5) are reported.

The noise of image ``i`` at every step comes from its own generator (seeded from ``seed`` and ``i``),
so the bound of an image does not depend on the batch size or on the number of ranks.
"""

from __future__ import annotations

import logging
import math
import os
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import torch
from torch import Tensor
from torch.utils.data import DataLoader, Dataset, Subset
from tqdm.auto import tqdm

from ddpm.diffusion.gaussian import GaussianDiffusion
from ddpm.diffusion.likelihood import BoundTerms, bound_terms, rate_distortion_curve
from ddpm.evaluation.distributed import all_reduce_sum, barrier, rank_and_world
from ddpm.sampling import PerSampleNoise
from ddpm.utils.rng import derive_seed

log = logging.getLogger(__name__)

Model = Callable[[Tensor, Tensor], Tensor]


def nll_seeds(seed: int, indices: Sequence[int]) -> list[int]:
    """Per-image noise seeds of the bound (a stream separate from sampling's)."""
    return [derive_seed("nll", int(seed), int(i)) for i in indices]


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


def _loader(dataset: Dataset, indices: Sequence[int], batch_size: int, num_workers: int) -> DataLoader:
    return DataLoader(
        Subset(dataset, list(indices)), batch_size=batch_size, shuffle=False, num_workers=num_workers
    )


def _images(batch: Any) -> Tensor:
    return batch[0] if isinstance(batch, list | tuple) else batch


@torch.no_grad()
def _accumulate(
    model: Model,
    diffusion: GaussianDiffusion,
    dataset: Dataset,
    indices: Sequence[int],
    stats: NLLStatistics,
    batch_size: int,
    seed: int,
    device: torch.device,
    clip_denoised: bool,
    num_workers: int,
    bar: Any = None,
) -> NLLStatistics:
    start = 0
    for batch in _loader(dataset, indices, batch_size, num_workers):
        x0 = _images(batch).to(device, torch.float32)
        chunk = indices[start : start + x0.shape[0]]
        start += x0.shape[0]
        noise = PerSampleNoise(nll_seeds(seed, chunk), x0.device)
        stats.update(bound_terms(model, diffusion, x0, noise, clip_denoised=clip_denoised))
        if bar is not None:
            bar.update(x0.shape[0])
    return stats


def dataset_nll(
    model: Model,
    diffusion: GaussianDiffusion,
    dataset: Dataset,
    num_images: int | None = None,
    batch_size: int = 64,
    seed: int = 0,
    device: torch.device | str = "cpu",
    clip_denoised: bool = True,
    num_workers: int = 0,
    progress: bool = False,
) -> NLLStatistics:
    """The bound on images ``0..num_images-1`` of ``dataset`` (all by default), sharded over ranks."""
    rank, world = rank_and_world()
    num_images = len(dataset) if num_images is None else int(num_images)  # type: ignore[arg-type]
    indices = list(range(rank, num_images, world))
    device = torch.device(device)
    stats = NLLStatistics(diffusion.num_timesteps, device)
    with tqdm(
        total=len(indices), disable=not (progress and rank == 0), desc="NLL", dynamic_ncols=True
    ) as bar:
        _accumulate(
            model,
            diffusion,
            dataset,
            indices,
            stats,
            batch_size,
            seed,
            device,
            clip_denoised,
            num_workers,
            bar,
        )
    return stats.reduced()


def dataset_nll_resumable(
    model: Model,
    diffusion: GaussianDiffusion,
    dataset: Dataset,
    folder: str | Path,
    fingerprint: str,
    num_images: int | None = None,
    shard_size: int = 500,
    batch_size: int = 64,
    seed: int = 0,
    device: torch.device | str = "cpu",
    clip_denoised: bool = True,
    num_workers: int = 0,
    progress: bool = False,
) -> NLLStatistics:
    """As :func:`dataset_nll`, saving the sums of every shard of ``shard_size`` images to ``folder``.

    A rerun with the same ``fingerprint`` skips finished shards. The result is the sum of the shards in
    shard order (read back by every rank), so it is bit-identical whatever the interruptions or ranks.
    """
    rank, world = rank_and_world()
    num_images = len(dataset) if num_images is None else int(num_images)  # type: ignore[arg-type]
    device = torch.device(device)
    folder = Path(folder)
    steps = diffusion.num_timesteps
    shards = [range(s, min(s + shard_size, num_images)) for s in range(0, num_images, shard_size)]

    def path(s: int) -> Path:
        return folder / f"nll_{s:05d}.pt"

    def read(s: int) -> NLLStatistics | None:
        try:
            payload = torch.load(path(s), map_location="cpu", weights_only=True)
            if payload["fingerprint"] != fingerprint or payload["indices"] != [
                shards[s].start,
                shards[s].stop,
            ]:
                return None
            stats = NLLStatistics(steps).load_tensors(payload["tensors"])
            return stats if stats.num == len(shards[s]) else None
        except Exception:  # missing, truncated, other layout
            return None

    todo = [s for s in range(rank, len(shards), world) if read(s) is None]
    total = sum(len(shards[s]) for s in todo)
    with tqdm(
        total=total, disable=not (progress and rank == 0 and total), desc="NLL", dynamic_ncols=True
    ) as bar:
        for s in todo:
            stats = NLLStatistics(steps, device)
            _accumulate(
                model,
                diffusion,
                dataset,
                shards[s],
                stats,
                batch_size,
                seed,
                device,
                clip_denoised,
                num_workers,
                bar,
            )
            folder.mkdir(parents=True, exist_ok=True)
            tmp = path(s).with_name(f".{path(s).name}.tmp-{os.getpid()}")
            payload = {
                "fingerprint": fingerprint,
                "indices": [shards[s].start, shards[s].stop],
                "tensors": [t.cpu() for t in stats.tensors()],
            }
            torch.save(payload, tmp)
            tmp.replace(path(s))
    barrier()
    result = NLLStatistics(steps)
    for s in range(len(shards)):
        part = read(s)
        if part is None:
            raise RuntimeError(f"NLL shard {path(s)} is missing or invalid after evaluation")
        result.add(part)
    return result
