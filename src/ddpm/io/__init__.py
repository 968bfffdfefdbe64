"""Files on disk: the one atomic writer, the one resumable shard store and the one checkpoint reader."""

from ddpm.io.atomic import atomic_save_torch, atomic_write, atomic_write_json
from ddpm.io.checkpoint_file import read_checkpoint, read_lightning_checkpoint
from ddpm.io.shards import ShardStore

__all__ = [
    "ShardStore",
    "atomic_save_torch",
    "atomic_write",
    "atomic_write_json",
    "read_checkpoint",
    "read_lightning_checkpoint",
]
