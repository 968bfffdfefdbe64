"""FID and Inception Score from float64 sufficient statistics that sum exactly across ranks.

Why our own accumulators instead of torchmetrics' ``FrechetInceptionDistance`` / ``InceptionScore``:

* one Inception pass gives both the FID features and the IS logits (torchmetrics' two metrics run
  the network twice, which doubles the cost of a 50k-sample evaluation);
* torchmetrics' IS keeps every logit, all-gathers them and shuffles with the global RNG; here each
  IS split keeps three sums (count, sum of p, sum of p log p), assigned by the image's *global index*,
  so the result is exact, deterministic, and the same on any number of ranks;
* the reference statistics of a dataset are cached on disk (:mod:`ddpm.metrics.reference_cache`),
  which needs direct access to the sums.

The FID sums are those torchmetrics keeps (float64 sum of features and of their outer products);
the IS splits reproduce torch-fidelity's ``isc_features_to_metric`` exactly (same permutation of
``np.random.RandomState(2020)``, same chunks); ``splits=1`` is the official DDPM code's protocol.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
from torch import Tensor

from ddpm.metrics.inception import FEATURE_DIM, NUM_CLASSES
from ddpm.utils.distributed import all_reduce_sum

DEFAULT_IS_SPLITS = (10, 1)
TORCH_FIDELITY_SHUFFLE_SEED = 2020


def _numerical_sqrt(eigvals: Tensor) -> Tensor:
    """sqrt of the eigenvalues of a PSD matrix, with those at rounding level (numerically 0) set to 0.

    With fewer samples than feature dimensions the covariances are rank-deficient; their ~dim null
    eigenvalues come out of ``eigh`` as +-1e-16 * max noise whose square roots (~1e-8 each) would add up
    and change with the float64 summation order (e.g. 1 vs 2 ranks).
    """
    tol = eigvals.abs().max() * eigvals.shape[0] * torch.finfo(eigvals.dtype).eps
    return torch.where(eigvals > tol, eigvals, torch.zeros_like(eigvals)).sqrt()


def frechet_distance(mu1: Tensor, sigma1: Tensor, mu2: Tensor, sigma2: Tensor) -> float:
    """||mu1 - mu2||^2 + tr(S1 + S2 - 2 (S1 S2)^(1/2)), in float64.

    tr((S1 S2)^(1/2)) is computed as the sum of the square roots of the eigenvalues of the symmetric
    PSD matrix S1^(1/2) S2 S1^(1/2), which has the same eigenvalues as S1 S2. That is exact and
    stable (``eigh`` on symmetric matrices), unlike scipy's ``sqrtm`` (slow, spurious imaginary parts)
    or general ``eigvals`` on the non-symmetric product (torchmetrics' private ``_compute_fid``).
    """
    mu1, mu2, sigma1, sigma2 = (x.detach().to("cpu", torch.float64) for x in (mu1, mu2, sigma1, sigma2))
    eigvals, eigvecs = torch.linalg.eigh(sigma1)
    sqrt1 = (eigvecs * _numerical_sqrt(eigvals)) @ eigvecs.T
    middle = sqrt1 @ sigma2 @ sqrt1
    trace_sqrt = _numerical_sqrt(torch.linalg.eigvalsh((middle + middle.T) / 2)).sum()
    diff = mu1 - mu2
    return float(diff @ diff + sigma1.trace() + sigma2.trace() - 2 * trace_sqrt)


def is_split_assignment(num_total: int, splits: int, shuffle_seed: int | None) -> Tensor:
    """Split id of every global index in [0, num_total): torch-fidelity's chunks of its permutation.

    torch-fidelity permutes the N features with ``RandomState(seed).permutation(N)`` and takes chunk
    ``i`` = positions ``[i N // splits, (i + 1) N // splits)``; so the feature of index ``perm[j]``
    falls in the split of position ``j``. ``shuffle_seed=None`` uses contiguous index ranges.
    """
    if not 1 <= splits <= num_total:
        raise ValueError(f"cannot form {splits} IS splits from {num_total} images")
    positions = torch.arange(num_total, dtype=torch.long)
    # chunk i holds positions [i*N//s, (i+1)*N//s): equivalently the largest i with i*N//s <= pos
    bounds = torch.tensor([i * num_total // splits for i in range(splits)], dtype=torch.long)
    split_of_position = torch.searchsorted(bounds, positions, right=True) - 1
    if shuffle_seed is None:
        return split_of_position
    perm = torch.from_numpy(np.random.RandomState(shuffle_seed).permutation(num_total).astype(np.int64))
    split_of = torch.empty(num_total, dtype=torch.long)
    split_of[perm] = split_of_position
    return split_of


class FeatureStatistics:
    """Count, float64 sum and float64 sum of outer products of feature vectors (for FID)."""

    def __init__(self, dim: int = FEATURE_DIM, device: torch.device | str = "cpu") -> None:
        self.count = torch.zeros((), dtype=torch.float64, device=device)
        self.total = torch.zeros(dim, dtype=torch.float64, device=device)
        self.outer = torch.zeros(dim, dim, dtype=torch.float64, device=device)

    def update(self, features: Tensor) -> None:
        f = features.detach().to(self.total.device, torch.float64)
        self.count += f.shape[0]
        self.total += f.sum(0)
        self.outer += f.T @ f

    @property
    def num(self) -> int:
        return round(float(self.count))

    def mean(self) -> Tensor:
        return self.total / self.count

    def cov(self) -> Tensor:
        """Unbiased covariance (n - 1), as numpy / pytorch-fid / torchmetrics."""
        if self.num < 2:
            raise ValueError(f"FID needs at least 2 images per set, got {self.num}")
        mu = self.mean()
        return (self.outer - self.count * torch.outer(mu, mu)) / (self.count - 1)

    def tensors(self) -> list[Tensor]:
        return [self.count, self.total, self.outer]

    def load_tensors(self, tensors: Sequence[Tensor]) -> FeatureStatistics:
        self.count, self.total, self.outer = (t.to(torch.float64) for t in tensors)
        return self


def fid(a: FeatureStatistics, b: FeatureStatistics) -> float:
    """FID between two feature sets."""
    return frechet_distance(a.mean(), a.cov(), b.mean(), b.cov())


class SplitISStatistics:
    """Per-split sums for the Inception Score: count, sum of p(y|x), sum of sum_y p log p."""

    def __init__(
        self,
        num_total: int,
        splits: int,
        shuffle_seed: int | None = TORCH_FIDELITY_SHUFFLE_SEED,
        num_classes: int = NUM_CLASSES,
        device: torch.device | str = "cpu",
    ) -> None:
        self.num_total = int(num_total)
        self.splits = int(splits)
        self.shuffle_seed = shuffle_seed
        self.split_of = is_split_assignment(self.num_total, self.splits, shuffle_seed).to(device)
        self.count = torch.zeros(splits, dtype=torch.float64, device=device)
        self.p_sum = torch.zeros(splits, num_classes, dtype=torch.float64, device=device)
        self.plogp_sum = torch.zeros(splits, dtype=torch.float64, device=device)

    def update(self, logits: Tensor, indices: Tensor) -> None:
        indices = indices.to(self.split_of.device, torch.long)
        if indices.numel() and (int(indices.min()) < 0 or int(indices.max()) >= self.num_total):
            raise IndexError(
                f"IS image indices must lie in [0, {self.num_total}), got {indices.tolist()[:8]}..."
            )
        log_p = logits.detach().to(self.p_sum.device, torch.float64).log_softmax(dim=1)
        p = log_p.exp()
        split = self.split_of[indices]
        self.count.index_add_(0, split, torch.ones_like(split, dtype=torch.float64))
        self.p_sum.index_add_(0, split, p)
        self.plogp_sum.index_add_(0, split, (p * log_p).sum(1))

    def scores(self) -> Tensor:
        """IS of each split: exp(mean_x KL(p(y|x) || p(y))) = exp(E[sum p log p] - sum q log q)."""
        expected = torch.bincount(self.split_of.cpu(), minlength=self.splits).to(torch.float64)
        if not torch.equal(self.count.cpu(), expected):
            raise RuntimeError(
                f"IS splits hold {self.count.tolist()} images but the settings expect {expected.tolist()}: "
                "some images were skipped or counted twice"
            )
        q = self.p_sum / self.count[:, None]
        entropy_q = -torch.special.xlogy(q, q).sum(1)
        return torch.exp(self.plogp_sum / self.count + entropy_q)

    def tensors(self) -> list[Tensor]:
        return [self.count, self.p_sum, self.plogp_sum]

    def load_tensors(self, tensors: Sequence[Tensor]) -> SplitISStatistics:
        self.count, self.p_sum, self.plogp_sum = (t.to(torch.float64) for t in tensors)
        return self


class InceptionStatistics:
    """FID feature statistics and IS split statistics of one image set (indices 0..num_total-1).

    ``update(features, logits, indices)`` on each rank's share, then ``reduced()`` on every rank
    gives the statistics of the whole set (a no-op on one process).
    """

    def __init__(
        self,
        num_total: int,
        is_splits: Sequence[int] = DEFAULT_IS_SPLITS,
        shuffle_seed: int | None = TORCH_FIDELITY_SHUFFLE_SEED,
        feature_dim: int = FEATURE_DIM,
        num_classes: int = NUM_CLASSES,
        device: torch.device | str = "cpu",
    ) -> None:
        self.num_total = int(num_total)
        # An IS split needs at least one image: split counts above num_total are left out.
        self.is_splits = tuple(int(s) for s in is_splits if int(s) <= self.num_total)
        self.shuffle_seed = shuffle_seed
        self.features = FeatureStatistics(feature_dim, device)
        self.inception = {
            s: SplitISStatistics(num_total, s, shuffle_seed, num_classes, device) for s in self.is_splits
        }

    def _parts(self) -> list[Tensor]:
        parts = self.features.tensors()
        for s in self.is_splits:
            parts += self.inception[s].tensors()
        return parts

    def _load_parts(self, parts: Sequence[Tensor]) -> InceptionStatistics:
        self.features.load_tensors(parts[:3])
        for k, s in enumerate(self.is_splits):
            self.inception[s].load_tensors(parts[3 + 3 * k : 6 + 3 * k])
        return self

    def update(self, features: Tensor, logits: Tensor, indices: Tensor) -> None:
        self.features.update(features)
        for stats in self.inception.values():
            stats.update(logits, indices)

    @property
    def num(self) -> int:
        return self.features.num

    def empty_like(self) -> InceptionStatistics:
        device = self.features.total.device
        dim = self.features.total.shape[0]
        classes = next(iter(self.inception.values())).p_sum.shape[1]
        return InceptionStatistics(
            self.num_total,
            self.is_splits,
            self.shuffle_seed,
            feature_dim=dim,
            num_classes=classes,
            device=device,
        )

    def reduced(self) -> InceptionStatistics:
        """The sums over all ranks (every rank must call this)."""
        return self.empty_like()._load_parts(all_reduce_sum(self._parts()))

    def inception_score(self, splits: int) -> tuple[float, float]:
        """(mean, std) over ``splits`` splits (std with ddof=0, as torch-fidelity; 0 for one split)."""
        if splits not in self.inception:
            raise KeyError(f"IS with {splits} splits was not accumulated (have {self.is_splits})")
        scores = self.inception[splits].scores()
        return float(scores.mean()), float(scores.std(unbiased=False)) if splits > 1 else 0.0

    def check_complete(self) -> None:
        if self.num != self.num_total:
            raise RuntimeError(
                f"statistics hold {self.num} images but {self.num_total} were expected: "
                "some images were skipped or counted twice"
            )

    def state_dict(self) -> dict[str, object]:
        return {
            "num_total": self.num_total,
            "is_splits": list(self.is_splits),
            "shuffle_seed": self.shuffle_seed,
            "tensors": [t.detach().cpu() for t in self._parts()],
        }

    @classmethod
    def from_state_dict(cls, state: dict, device: torch.device | str = "cpu") -> InceptionStatistics:
        tensors = [t.to(device) for t in state["tensors"]]
        dim = tensors[1].shape[0]
        classes = tensors[4].shape[1]
        stats = cls(
            state["num_total"],
            state["is_splits"],
            state["shuffle_seed"],
            feature_dim=dim,
            num_classes=classes,
            device=device,
        )
        return stats._load_parts(tensors)


def statistics_for(
    extractor: object,
    num_total: int,
    is_splits: Sequence[int] = DEFAULT_IS_SPLITS,
    shuffle_seed: int | None = TORCH_FIDELITY_SHUFFLE_SEED,
    device: torch.device | str = "cpu",
) -> InceptionStatistics:
    """Empty statistics sized for ``extractor``'s outputs (``feature_dim`` / ``num_classes`` attributes,
    the Inception's 2048 / 1008 by default)."""
    dim = int(getattr(extractor, "feature_dim", FEATURE_DIM))
    classes = int(getattr(extractor, "num_classes", NUM_CLASSES))
    return InceptionStatistics(
        num_total, is_splits, shuffle_seed, feature_dim=dim, num_classes=classes, device=device
    )


__all__ = [
    "DEFAULT_IS_SPLITS",
    "TORCH_FIDELITY_SHUFFLE_SEED",
    "FeatureStatistics",
    "InceptionStatistics",
    "SplitISStatistics",
    "fid",
    "frechet_distance",
    "is_split_assignment",
    "statistics_for",
]
