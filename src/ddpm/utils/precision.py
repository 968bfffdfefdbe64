"""The TF32 policy: the U-Net may use TF32 when asked (``high``/``medium``); the Inception never does.

TF32 (Ampere and later NVIDIA GPUs) keeps fp32's range with a 10-bit mantissa in matmuls and
convolutions: about 2-8x the fp32 throughput, with relative errors around 1e-3 per product. Two
switches govern it: ``torch.set_float32_matmul_precision`` (matmuls; ``highest`` by default) and
``torch.backends.cudnn.allow_tf32`` (convolutions; **on** by default in PyTorch). So "strict fp32"
needs both off, and the U-Net's convolutions run in TF32 unless told otherwise.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import torch

from ddpm.errors import ConfigError

MATMUL_PRECISIONS = ("highest", "high", "medium")


def set_tf32_policy(float32_matmul_precision: str | None) -> None:
    """Apply the run's ``float32_matmul_precision`` to matmuls and cuDNN convolutions alike.

    ``highest``: strict fp32 everywhere; ``high``: TF32 matmuls and convolutions; ``medium``: also
    bf16 matmuls where PyTorch allows. ``None`` leaves PyTorch's settings as they are. The Inception
    ignores this and always runs in :func:`strict_fp32` (:mod:`ddpm.metrics.inception`).
    """
    if float32_matmul_precision is None:
        return
    if float32_matmul_precision not in MATMUL_PRECISIONS:
        raise ConfigError(
            f"float32_matmul_precision={float32_matmul_precision!r} is not one of {list(MATMUL_PRECISIONS)}: "
            "use highest (strict fp32) or high (TF32 on Ampere+ GPUs)"
        )
    torch.set_float32_matmul_precision(float32_matmul_precision)
    torch.backends.cudnn.allow_tf32 = float32_matmul_precision != "highest"


@contextmanager
def strict_fp32() -> Iterator[None]:
    """Full-precision fp32 matmuls and convolutions in the block, whatever the global TF32 setting.

    FID is sensitive to small feature changes, and TF32 changes them: the Inception always runs in
    strict fp32, while the U-Net may use TF32. The previous settings come back on exit. On the CPU
    this changes nothing.
    """
    matmul_precision = torch.get_float32_matmul_precision()
    cuda_matmul_tf32 = torch.backends.cuda.matmul.allow_tf32
    torch.set_float32_matmul_precision("highest")
    torch.backends.cuda.matmul.allow_tf32 = False
    try:
        with torch.backends.cudnn.flags(enabled=torch.backends.cudnn.enabled, allow_tf32=False):
            yield
    finally:
        torch.set_float32_matmul_precision(matmul_precision)
        torch.backends.cuda.matmul.allow_tf32 = cuda_matmul_tf32
