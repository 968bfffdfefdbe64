"""KID and precision/recall from Inception pool-3 features, split over the ranks, the same on any number.

* KID (Binkowski et al. 2018): the unbiased estimate of MMD^2 between the two feature sets with the
  polynomial kernel k(x, y) = (x.y / d + 1)^3, averaged (mean, std with ddof=0) over ``subsets`` random
  subsets of ``m = min(subset_size, n_1, n_2)`` features of each set, drawn without replacement by
  ``numpy.random.RandomState(seed)`` in torch-fidelity's order (set 1, then set 2, per subset; seed 2020).
  MMD^2_u = sum_{i!=j} k(x_i, x_j) / (m (m - 1)) + sum_{i!=j} k(y_i, y_j) / (m (m - 1))
  - 2 sum_{i,j} k(x_i, y_j) / m^2.
* Precision / recall (Kynkaenniemi et al. 2019): the k-NN radius of a feature is its distance to its
  k-th nearest neighbour in its own set (k = 3; the distance to itself counts as the 0th). Precision =
  fraction of generated features inside at least one real feature's ball; recall = fraction of real
  features inside at least one generated feature's ball (torch-fidelity's ``prc``, ``<=`` at the edge).

Features are kept in float32; kernels and squared distances are computed in float64, in blocks of
``batch`` rows by ``batch`` columns, so no full n x n matrix is ever held. Under DDP every rank holds
both feature sets; rank r computes KID subsets r, r + world, ... and the radii / ball tests of rows
r, r + world, ...; the results are summed across ranks, so every rank returns the same numbers, and each
number is computed exactly as on one process.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator

import numpy as np
import torch
from torch import Tensor

from ddpm.utils.distributed import all_reduce_sum, rank_and_world

log = logging.getLogger(__name__)

TORCH_FIDELITY_KID_SEED = 2020


def _squared_distances(a: Tensor, b: Tensor) -> Tensor:
    """||a_i - b_j||^2 in float64 (rows of float32 ``a`` [n, d] and ``b`` [m, d]), clamped at 0."""
    a64, b64 = a.to(torch.float64), b.to(torch.float64)
    d2 = (a64 * a64).sum(1)[:, None] + (b64 * b64).sum(1)[None, :] - 2.0 * (a64 @ b64.T)
    return d2.clamp_min_(0.0)


def _row_blocks(num: int, batch: int) -> Iterator[Tensor]:
    """This rank's row indices, in blocks of at most ``batch`` (row i belongs to rank i % world)."""
    rank, world = rank_and_world()
    mine = torch.arange(rank, num, world)
    yield from mine.split(batch)


def knn_radii(features: Tensor, k: int = 3, batch: int = 1024) -> Tensor:
    """Squared distance of every feature to its k-th nearest neighbour in ``features`` (float64 [n]).

    The feature itself is the 0th neighbour (torch-fidelity's ``kthvalue(k + 1)`` over a row that
    includes the diagonal). Every rank must call this.
    """
    n = features.shape[0]
    if not 1 <= k < n:
        raise ValueError(f"precision/recall with k={k} needs more than k features, got {n}")
    radii = torch.zeros(n, dtype=torch.float64, device=features.device)
    for rows in _row_blocks(n, batch):
        rows = rows.to(features.device)
        best = None
        for start in range(0, n, batch):
            d2 = _squared_distances(features[rows], features[start : start + batch])
            own = rows[:, None] - start == torch.arange(d2.shape[1], device=d2.device)[None, :]
            d2 = d2.masked_fill(own, 0.0)  # the distance of a feature to itself is 0, not rounding noise
            best = d2 if best is None else torch.cat([best, d2], 1)
            best = best.topk(min(k + 1, best.shape[1]), dim=1, largest=False).values
        radii[rows] = best[:, k]
    (radii,) = all_reduce_sum([radii])
    return radii


def fraction_in_balls(queries: Tensor, centres: Tensor, radii: Tensor, batch: int = 1024) -> float:
    """Fraction of ``queries`` within distance sqrt(radii[j]) of at least one ``centres[j]``."""
    inside = torch.zeros((), dtype=torch.float64, device=queries.device)
    for rows in _row_blocks(queries.shape[0], batch):
        rows = rows.to(queries.device)
        hit = torch.zeros(rows.numel(), dtype=torch.bool, device=queries.device)
        for start in range(0, centres.shape[0], batch):
            d2 = _squared_distances(queries[rows], centres[start : start + batch])
            hit |= (d2 <= radii[None, start : start + batch]).any(1)
        inside += hit.sum()
    (inside,) = all_reduce_sum([inside])
    return float(inside) / queries.shape[0]


def precision_recall(generated: Tensor, real: Tensor, k: int = 3, batch: int = 1024) -> tuple[float, float]:
    """(precision, recall) of the generated features against the real ones, with k-NN balls."""
    precision = fraction_in_balls(generated, real, knn_radii(real, k, batch), batch)
    recall = fraction_in_balls(real, generated, knn_radii(generated, k, batch), batch)
    return precision, recall


def _polynomial_kernel(x: Tensor, y: Tensor) -> Tensor:
    """(x.y / d + 1)^3 in float64."""
    return (x.to(torch.float64) @ y.to(torch.float64).T / x.shape[1] + 1.0) ** 3


def mmd2_unbiased(x: Tensor, y: Tensor) -> Tensor:
    """The unbiased MMD^2 estimate between two equal-size feature sets, polynomial kernel."""
    m = x.shape[0]
    k_xx, k_yy, k_xy = _polynomial_kernel(x, x), _polynomial_kernel(y, y), _polynomial_kernel(x, y)
    within = (k_xx.sum() - k_xx.diagonal().sum() + k_yy.sum() - k_yy.diagonal().sum()) / (m * (m - 1))
    return within - 2.0 * k_xy.sum() / (m * m)


def kid_subset_size(num_generated: int, num_real: int, subset_size: int) -> int:
    """The m of every KID subset: ``min(subset_size, num_generated, num_real)``."""
    return min(int(subset_size), int(num_generated), int(num_real))


def kid(
    generated: Tensor,
    real: Tensor,
    subsets: int = 100,
    subset_size: int = 1000,
    seed: int = TORCH_FIDELITY_KID_SEED,
) -> tuple[float, float]:
    """KID (mean, std with ddof=0) over ``subsets`` subsets of ``min(subset_size, n_1, n_2)`` features.

    The subsets are drawn on every rank from one RNG, so rank r computes subsets r, r + world, ...
    exactly as one process would. Every rank must call this.
    """
    n_1, n_2 = generated.shape[0], real.shape[0]
    m = kid_subset_size(n_1, n_2, subset_size)
    if m < 2:
        raise ValueError(f"KID needs subsets of at least 2 features, got {n_1} and {n_2} features")
    if m < subset_size:
        log.warning(
            "KID on subsets of %(m)d features, fewer than kid_subset_size=%(size)d (%(n_1)d generated, "
            "%(n_2)d real; torch-fidelity refuses this): not comparable with KID at %(size)d; the report "
            "records %(m)d",
            {"m": m, "size": subset_size, "n_1": n_1, "n_2": n_2},
        )
    rank, world = rank_and_world()
    rng = np.random.RandomState(seed)
    mmds = torch.zeros(subsets, dtype=torch.float64, device=generated.device)
    for i in range(subsets):
        pick_1 = torch.from_numpy(rng.choice(n_1, m, replace=False)).to(generated.device)
        pick_2 = torch.from_numpy(rng.choice(n_2, m, replace=False)).to(real.device)
        if i % world == rank:
            mmds[i] = mmd2_unbiased(generated[pick_1], real[pick_2])
    (mmds,) = all_reduce_sum([mmds])
    return float(mmds.mean()), float(mmds.std(unbiased=False))


__all__ = [
    "TORCH_FIDELITY_KID_SEED",
    "fraction_in_balls",
    "kid",
    "kid_subset_size",
    "knn_radii",
    "mmd2_unbiased",
    "precision_recall",
]
