"""Where a feature network's weights file is found, offline first: the one resolver of the Inception (FID,
IS, KID) and the VGG-16 (precision/recall) weights.

Resolution order: an explicit path (a config key), an environment variable, the file's name (or an alias)
in torch hub's checkpoint directory, then a download into that directory (unless disabled). A missing
file is a one-line error saying which file to fetch, where to put it and how to pass its path.
"""

from __future__ import annotations

import hashlib
import logging
import os
from collections.abc import Callable
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import torch

log = logging.getLogger(__name__)


def hub_checkpoint_dir() -> Path:
    """``$TORCH_HOME/hub/checkpoints`` (``~/.cache/torch/hub/checkpoints`` by default)."""
    return Path(torch.hub.get_dir()) / "checkpoints"


@dataclass(frozen=True)
class WeightsFile:
    """A network's weights file: its name (and accepted aliases), its download URLs, the SHA-256 prefix of
    the official file, and how a user passes its path (``config_key``, ``env_var``); ``error`` is raised."""

    label: str
    filename: str
    urls: tuple[str, ...]
    sha256_prefix: str
    env_var: str
    config_key: str
    error: type[Exception]
    aliases: tuple[str, ...] = ()

    def instructions(self, reason: str, hub_dir: Path) -> str:
        """The one-line error of a missing file: what to fetch, where to put it, how to pass it."""
        return (
            f"{reason}: download {self.urls[0]} on a machine with internet and copy it to "
            f"{hub_dir / self.filename}, or pass its path (ddpm-eval: {self.config_key}=/path/to/"
            f"{self.filename}) (or the environment variable {self.env_var})"
        )


def download(spec: WeightsFile, destination: Path) -> None:
    """Download the file to ``destination`` from the first URL that works, checking its hash prefix
    (atomic: torch writes a temporary file, then renames); ``OSError`` naming every failure otherwise."""
    errors = []
    destination.parent.mkdir(parents=True, exist_ok=True)
    for url in spec.urls:
        try:
            torch.hub.download_url_to_file(
                url, str(destination), hash_prefix=spec.sha256_prefix, progress=False
            )
            return
        except Exception as exc:  # no network, proxy, HTTP error, hash mismatch
            errors.append(f"{type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}")
    raise OSError("; ".join(errors))


def resolve(
    spec: WeightsFile,
    weights_path: str | Path | None,
    allow_download: bool,
    hub_dir: Path,
    fetch: Callable[[Path], None],
) -> Path:
    """The path of ``spec``'s file (see the module doc); ``fetch(destination)`` downloads it."""
    if weights_path:
        path = Path(weights_path).expanduser()
        if not path.is_file():
            raise spec.error(spec.instructions(f"{spec.label} weights {path} do not exist", hub_dir))
        return path
    if os.environ.get(spec.env_var):
        path = Path(os.environ[spec.env_var]).expanduser()
        if not path.is_file():
            raise spec.error(spec.instructions(f"{spec.env_var}={path} does not exist", hub_dir))
        return path
    for name in (spec.filename, *spec.aliases):
        if (hub_dir / name).is_file():
            return hub_dir / name
    if not allow_download:
        reason = f"no {spec.label} weights in {hub_dir} and downloads are disabled"
        raise spec.error(spec.instructions(reason, hub_dir))
    destination = hub_dir / spec.filename
    log.info("Downloading the %s weights to %s", spec.label, destination)
    try:
        fetch(destination)
    except OSError as exc:
        reason = f"no {spec.label} weights in {hub_dir} and the download failed ({exc})"
        raise spec.error(spec.instructions(reason, hub_dir)) from None
    return destination


@lru_cache(maxsize=16)
def _sha256(path: str, size: int, mtime_ns: int) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def file_sha256(path: str | Path) -> str:
    """SHA-256 of a file (memoised on path, size and modification time): the weights' identity in cache
    keys and reports."""
    stat = Path(path).stat()
    return _sha256(str(Path(path).resolve()), stat.st_size, stat.st_mtime_ns)


__all__ = ["WeightsFile", "download", "file_sha256", "hub_checkpoint_dir", "resolve"]
