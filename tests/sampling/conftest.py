from __future__ import annotations

from pathlib import Path

import pytest

from tests.helpers import TINY, compose_train, fit_checkpoint


@pytest.fixture(scope="session")
def tiny_checkpoint(tmp_path_factory) -> Path:
    """A real ddpm-train style checkpoint (one optimizer step of the tiny U-Net on digits)."""
    out = tmp_path_factory.mktemp("tiny_ckpt")
    cfg = compose_train([*TINY, "trainer.max_steps=1", "data.batch_size=8"], out)
    return fit_checkpoint(cfg, out / "last.ckpt")
