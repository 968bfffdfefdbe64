"""The one loop that feeds images to a feature network, in chunks, and the sums it accumulates.

A feature network (the Inception, or a stand-in with its interface) maps a chunk of images [b, C, H, W]
to ``(features [b, dim], logits [b, classes])``. :func:`feature_chunks` feeds it ``(global indices,
images)`` batches in chunks of at most ``batch_size`` images; :func:`accumulate` adds every chunk to the
FID/IS sums (:class:`~ddpm.metrics.statistics.InceptionStatistics`) and, on request, keeps the float32
features of every image (for KID and precision/recall), gathered once over the ranks;
:func:`gathered_features` keeps the features alone (a second feature network: VGG-16 for precision/recall).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator

import torch
from torch import Tensor

from ddpm.metrics.statistics import InceptionStatistics
from ddpm.utils.distributed import gather_rows

FeatureNetwork = Callable[[Tensor], tuple[Tensor, Tensor]]
Batches = Iterable[tuple[Tensor, Tensor]]


@torch.no_grad()
def feature_chunks(
    extractor: FeatureNetwork, batches: Batches, batch_size: int, device: torch.device | str
) -> Iterator[tuple[Tensor, Tensor, Tensor]]:
    """``(indices, features, logits)`` of every chunk of at most ``batch_size`` images of ``(global
    indices, images)`` batches, in order; images go to ``device``, indices stay where they are."""
    for indices, images in batches:
        for start in range(0, images.shape[0], batch_size):
            features, logits = extractor(images[start : start + batch_size].to(device))
            yield indices[start : start + batch_size], features, logits


def gathered_features(
    extractor: FeatureNetwork,
    batches: Batches,
    num_total: int,
    *,
    batch_size: int = 100,
    device: torch.device | str = "cpu",
    on_chunk: Callable[[Tensor, Tensor, Tensor], None] | None = None,
) -> Tensor:
    """The float32 features [num_total, dim] of all images, in index order, on every rank: this rank's
    ``(global indices, images)`` batches, gathered from the ranks (every rank must call this).

    :param on_chunk: ``on_chunk(features, logits, indices)`` sees every chunk (e.g. the FID/IS sums).
    """
    kept, kept_indices = [], []
    for indices, features, logits in feature_chunks(extractor, batches, batch_size, device):
        if on_chunk is not None:
            on_chunk(features, logits, indices)
        kept.append(features.to(torch.float32))
        kept_indices.append(indices)
    dim = int(extractor.feature_dim)  # type: ignore[attr-defined]
    mine = torch.cat(kept) if kept else torch.zeros(0, dim, device=device)
    index = torch.cat(kept_indices) if kept_indices else torch.zeros(0, dtype=torch.long)
    return gather_rows(mine, index, num_total)


def accumulate(
    stats: InceptionStatistics,
    extractor: FeatureNetwork,
    batches: Batches,
    batch_size: int = 100,
    device: torch.device | str = "cpu",
    keep_features: bool = False,
) -> Tensor | None:
    """Add every chunk of ``batches`` to ``stats`` (this rank's share; ``stats.reduced()`` sums the ranks).

    :param keep_features: also return the float32 features of all ``stats.num_total`` images, in index
        order, on every rank (:func:`gathered_features`: then every rank must call this).
    :return: the features [num_total, dim] with ``keep_features``, else None.
    """
    if keep_features:
        return gathered_features(
            extractor, batches, stats.num_total, batch_size=batch_size, device=device, on_chunk=stats.update
        )
    for indices, features, logits in feature_chunks(extractor, batches, batch_size, device):
        stats.update(features, logits, indices)
    return None


__all__ = ["Batches", "FeatureNetwork", "accumulate", "feature_chunks", "gathered_features"]
