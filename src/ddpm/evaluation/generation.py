"""Hardware-independent sample generation, sharded over ranks, stored as resumable uint8 NPZ shards.

Sample ``i`` is drawn with its own noise generator seeded from ``seed + i``
(:class:`~ddpm.sampling.PerSampleNoise`), so it depends only on the weights, the sampler settings
and ``seed + i``: not on the batch size, nor on the number of ranks, nor on which rank makes it
(on one device type: CPU and CUDA generators differ, so the device type is part of the fingerprint).

Samples ``0..N-1`` are cut into shards of ``shard_size`` consecutive indices; shard ``s`` belongs to
rank ``s % world_size``. Each finished shard is written atomically as ``samples_XXXXX.npz``
(``images``: uint8 [n, H, W, C]; ``indices``; ``fingerprint``). A rerun skips every shard that is
complete and has the same fingerprint (weights, sampler, seed, N, shard size, device type), so an
interrupted evaluation resumes where it stopped and produces exactly the same samples.

Samplers are used only through ``sampler.sample(model, shape, noise, device, progress)``.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn
from tqdm.auto import tqdm

from ddpm.evaluation.distributed import rank_and_world
from ddpm.sampling import PerSampleNoise
from ddpm.utils.images import to_uint8

log = logging.getLogger(__name__)

_SIMPLE = (int, float, str, bool, type(None))


def module_digest(module: nn.Module) -> str:
    """SHA-256 of a module's state dict (names, shapes, dtypes and bytes): identifies the weights."""
    digest = hashlib.sha256()
    for name, tensor in sorted(module.state_dict().items()):
        t = tensor.detach().cpu().contiguous()
        digest.update(f"{name}:{tuple(t.shape)}:{t.dtype}".encode())
        digest.update(t.view(torch.uint8).numpy().tobytes() if t.numel() else b"")
    return digest.hexdigest()


def _plain(value: Any) -> Any:
    """A JSON-able summary of a setting (long sequences and tensors as a length and a hash)."""
    if isinstance(value, _SIMPLE):
        return value
    if isinstance(value, list | tuple) and len(value) > 16:
        text = json.dumps([_plain(v) for v in value], default=str)
        return {"len": len(value), "sha256": hashlib.sha256(text.encode()).hexdigest()[:16]}
    if isinstance(value, list | tuple):
        return [_plain(v) for v in value]
    if isinstance(value, Tensor) and value.numel() <= 16:
        return value.tolist()
    if isinstance(value, Tensor):
        return hashlib.sha256(value.detach().cpu().double().numpy().tobytes()).hexdigest()[:16]
    return None


def describe_diffusion(diffusion: Any) -> dict[str, Any]:
    """The settings of a GaussianDiffusion that change samples (schedule via a hash of its betas)."""
    out = {"class": type(diffusion).__name__}
    for attr in ("num_timesteps", "mean_type", "var_type", "schedule", "betas"):
        if hasattr(diffusion, attr):
            out[attr] = _plain(getattr(diffusion, attr))
    return out


def describe_sampler(sampler: Any) -> dict[str, Any]:
    """The class and simple attributes of a sampler (and its diffusion): part of the fingerprint."""
    out: dict[str, Any] = {"class": f"{type(sampler).__module__}.{type(sampler).__qualname__}"}
    for name, value in sorted(vars(sampler).items()):
        if isinstance(value, nn.Module) and hasattr(value, "betas"):  # the (base / respaced) diffusion
            out[name] = describe_diffusion(value)
        elif not name.startswith("_") and (plain := _plain(value)) is not None:
            out[name] = plain
    for attr in ("num_steps",):
        if hasattr(sampler, attr):
            out[attr] = _plain(getattr(sampler, attr))
    return out


def generation_fingerprint(**parts: Any) -> str:
    """SHA-256 of a JSON description of everything samples depend on."""
    return hashlib.sha256(json.dumps(parts, sort_keys=True, default=str).encode()).hexdigest()


@torch.no_grad()
def generate(
    model: nn.Module,
    sampler: Any,
    image_shape: Sequence[int],
    indices: Sequence[int],
    seed: int,
    batch_size: int,
    device: torch.device | str = "cpu",
) -> Iterator[tuple[Tensor, Tensor]]:
    """Yield ``(indices, uint8 images [b, C, H, W] on the CPU)`` for the given global sample indices."""
    device = torch.device(device)
    indices = [int(i) for i in indices]
    for start in range(0, len(indices), batch_size):
        chunk = indices[start : start + batch_size]
        noise = PerSampleNoise([seed + i for i in chunk], device)
        x = sampler.sample(model, tuple(image_shape), noise, device, progress=False)
        yield torch.tensor(chunk, dtype=torch.long), to_uint8(x.float()).cpu()


class ShardStore:
    """``samples_XXXXX.npz`` shards of ``shard_size`` consecutive sample indices in ``folder``."""

    def __init__(self, folder: str | Path, fingerprint: str, num_samples: int, shard_size: int) -> None:
        if num_samples < 1 or shard_size < 1:
            raise ValueError(f"need num_samples >= 1 and shard_size >= 1, got {num_samples}, {shard_size}")
        self.folder = Path(folder)
        self.fingerprint = fingerprint
        self.num_samples = int(num_samples)
        self.shard_size = int(shard_size)
        self.ranges = [range(s, min(s + shard_size, num_samples)) for s in range(0, num_samples, shard_size)]

    @property
    def num_shards(self) -> int:
        return len(self.ranges)

    def path(self, shard: int) -> Path:
        return self.folder / f"samples_{shard:05d}.npz"

    def shards_of_rank(self, rank: int, world: int) -> list[int]:
        return list(range(rank, self.num_shards, world))

    def read(self, shard: int) -> tuple[Tensor, Tensor] | None:
        """``(indices, uint8 images [n, C, H, W])`` of a complete shard with our fingerprint, else None."""
        path = self.path(shard)
        if not path.is_file():
            return None
        try:
            with np.load(path, allow_pickle=False) as data:
                if str(data["fingerprint"]) != self.fingerprint:
                    log.warning("%s was made with other settings or weights: regenerating it", path)
                    return None
                indices, images = data["indices"], data["images"]
            expected = np.arange(self.ranges[shard].start, self.ranges[shard].stop)
            if images.dtype != np.uint8 or images.ndim != 4 or not np.array_equal(indices, expected):
                raise ValueError("unexpected contents")
        except Exception as exc:  # truncated zip, bad CRC, missing array
            log.warning("%s is unreadable (%s: %s): regenerating it", path, type(exc).__name__, exc)
            return None
        return torch.from_numpy(indices.astype(np.int64)), torch.from_numpy(images).permute(0, 3, 1, 2)

    def is_complete(self, shard: int) -> bool:
        return self.read(shard) is not None

    def write(self, shard: int, images: Tensor) -> Path:
        """Write a shard's uint8 [n, C, H, W] images atomically."""
        expected = self.ranges[shard]
        if images.dtype != torch.uint8 or images.shape[0] != len(expected):
            raise ValueError(
                f"shard {shard} needs {len(expected)} uint8 images, got {images.shape[0]} {images.dtype}"
            )
        self.folder.mkdir(parents=True, exist_ok=True)
        path = self.path(shard)
        tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
        with open(tmp, "wb") as f:
            np.savez(
                f,
                images=images.permute(0, 2, 3, 1).contiguous().numpy(),
                indices=np.arange(expected.start, expected.stop, dtype=np.int64),
                fingerprint=np.array(self.fingerprint),
            )
            f.flush()
            os.fsync(f.fileno())
        tmp.replace(path)
        return path

    def iter_shards(self, shards: Iterable[int]) -> Iterator[tuple[Tensor, Tensor]]:
        for shard in shards:
            item = self.read(shard)
            if item is None:
                raise RuntimeError(f"shard {self.path(shard)} is missing or invalid after generation")
            yield item


def generate_shards(
    model: nn.Module,
    sampler: Any,
    store: ShardStore,
    image_shape: Sequence[int],
    seed: int,
    batch_size: int,
    device: torch.device | str = "cpu",
    progress: bool = True,
) -> list[int]:
    """Generate this rank's missing shards; returns the shard ids of this rank (done or resumed)."""
    rank, world = rank_and_world()
    mine = store.shards_of_rank(rank, world)
    todo = [s for s in mine if not store.is_complete(s)]
    done = len(mine) - len(todo)
    if done:
        log.info("Rank %d: resuming, %d of its %d shards are already complete", rank, done, len(mine))
    total = sum(len(store.ranges[s]) for s in todo)
    model_was_training = model.training
    model.eval()
    # tqdm shows the rate and the ETA; only rank 0 draws it (all ranks do the same amount of work).
    with tqdm(
        total=total, disable=not (progress and rank == 0 and total > 0), desc="samples", dynamic_ncols=True
    ) as bar:
        try:
            for shard in todo:
                images = []
                for _, batch in generate(
                    model, sampler, image_shape, store.ranges[shard], seed, batch_size, device
                ):
                    images.append(batch)
                    bar.update(batch.shape[0])
                store.write(shard, torch.cat(images))
        finally:
            model.train(model_was_training)
    return mine
