from __future__ import annotations

from pathlib import Path

import hydra
import lightning as L
import pytest
import torch
from omegaconf import OmegaConf

from ddpm.callbacks.run_config import RunConfigCallback
from tests.helpers import TINY, compose_train


@pytest.fixture(scope="session")
def tiny_checkpoint(tmp_path_factory) -> Path:
    """A real ddpm-train style checkpoint (one optimizer step of the tiny U-Net on digits)."""
    out = tmp_path_factory.mktemp("tiny_ckpt")
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    cfg = compose_train([*TINY, "trainer.max_steps=1", "data.batch_size=8"], out)
    datamodule = hydra.utils.instantiate(cfg.data)
    module = hydra.utils.instantiate(cfg.module)
    trainer = L.Trainer(
        callbacks=[RunConfigCallback(OmegaConf.to_container(cfg, resolve=True))],
        max_steps=1,
        accelerator="cpu",
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        limit_val_batches=0,
        use_distributed_sampler=False,
    )
    trainer.fit(module, datamodule=datamodule)
    path = out / "last.ckpt"
    trainer.save_checkpoint(path)
    torch.set_num_threads(threads)
    return path
