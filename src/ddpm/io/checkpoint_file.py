"""The one checkpoint reader: ``torch.load`` with ``weights_only=True`` and one-line errors.

Our checkpoints hold only tensors and plain containers (numbers, strings, lists, dicts), so they load
with ``weights_only=True``, which cannot run code. A file that carries pickled Python objects (a
checkpoint received from someone else may) is refused instead of executed. Lightning's own resume
(``trainer.fit(ckpt_path=...)``) reads the file again through ``torch.load`` with torch's default,
which is ``weights_only=True`` since torch 2.6; entry points validate the file here first.
"""

from __future__ import annotations

import pickle
from pathlib import Path
from typing import Any

import torch

from ddpm.errors import CheckpointError

# the label dropout a class-conditional model was trained with (``ddpm-train`` writes it): 0 means its null
# class was never trained, so guidance, unconditional samples and the unconditional NLL are refused
CLASS_DROPOUT_KEY = "ddpm_class_dropout"


def read_checkpoint(path: str | Path, map_location: str | torch.device = "cpu", mmap: bool = False) -> Any:
    """The contents of a ``torch.save`` file, loaded safely; else a one-line :class:`CheckpointError`."""
    path = Path(path).expanduser()
    if not path.is_file():
        raise CheckpointError(f"checkpoint {path} does not exist: check the path")
    try:
        return torch.load(path, map_location=map_location, weights_only=True, mmap=mmap)
    except pickle.UnpicklingError as exc:
        if "unsupported global" not in str(exc).lower():  # not a forbidden object: garbage bytes
            raise CheckpointError(_corrupt(path, exc)) from None
        raise CheckpointError(
            f"checkpoint {path} carries pickled Python objects, which could run code when loaded; "
            "refusing it: use a checkpoint written by ddpm-train, or re-save its tensors only"
        ) from None
    except Exception as exc:
        raise CheckpointError(_corrupt(path, exc)) from None


def _corrupt(path: Path, exc: BaseException) -> str:
    return (
        f"checkpoint {path} is unreadable ({type(exc).__name__}): it is truncated or corrupt; "
        "use another one (e.g. an earlier step_*.ckpt)"
    )


def read_lightning_checkpoint(
    path: str | Path, map_location: str | torch.device = "cpu", mmap: bool = False
) -> dict[str, Any]:
    """A Lightning checkpoint (a dict with a ``state_dict``) of this project, read safely."""
    checkpoint = read_checkpoint(path, map_location, mmap)
    if not is_lightning_checkpoint(checkpoint):
        raise CheckpointError(f"{path} is not a Lightning checkpoint of this project (no state_dict)")
    return checkpoint


def is_lightning_checkpoint(obj: Any) -> bool:
    """True for the dict ``torch.load`` returns on a Lightning ``.ckpt`` file."""
    return (
        isinstance(obj, dict)
        and isinstance(obj.get("state_dict"), dict)
        and ("ddpm_config" in obj or "pytorch-lightning_version" in obj or "global_step" in obj)
    )


__all__ = ["CLASS_DROPOUT_KEY", "is_lightning_checkpoint", "read_checkpoint", "read_lightning_checkpoint"]
