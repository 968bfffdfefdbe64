"""The TF-compatible Inception-v3 used by FID and IS, with offline-friendly weight resolution.

FID and IS are only comparable with the paper when they use the TF "2015-12-05" Inception graph.
We use torch-fidelity's port (``FeatureExtractorInceptionV3``, registered as ``inception-v3-compat``):
it takes uint8 images in [0, 255], resizes them to 299x299 with the TF1-compatible bilinear resize
and returns the 2048-d pool_3 features (FID) and the 1008-way ``logits_unbiased`` (IS) in ONE pass.
torchvision's ImageNet Inception weights are different weights and give wrong numbers.

The weights file is ``pt_inception-2015-12-05-6726825d.pth`` (pytorch-fid's release; torch-fidelity
hosts the same file as ``weights-inception-2015-12-05-6726825d.pth``; ``6726825d`` is the prefix of its
SHA-256). Resolution order: an explicit path, the ``DDPM_INCEPTION_WEIGHTS`` environment variable,
either file name in torch hub's checkpoint directory, then a download (unless disabled). Without
weights and without internet, :class:`InceptionWeightsError` says which file to fetch and where to put it.
"""

from __future__ import annotations

import logging
import sys
import tempfile
from contextlib import redirect_stdout
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from ddpm.errors import DDPMError
from ddpm.io.checkpoint_file import read_checkpoint
from ddpm.metrics.weights_file import WeightsFile, download, file_sha256, hub_checkpoint_dir, resolve
from ddpm.utils.images import to_uint8
from ddpm.utils.precision import strict_fp32

log = logging.getLogger(__name__)

INCEPTION_FILENAME = "pt_inception-2015-12-05-6726825d.pth"
TORCH_FIDELITY_FILENAME = "weights-inception-2015-12-05-6726825d.pth"
INCEPTION_URLS = (
    "https://github.com/mseitzer/pytorch-fid/releases/download/fid_weights/" + INCEPTION_FILENAME,
    "https://github.com/toshas/torch-fidelity/releases/download/v0.2.0/" + TORCH_FIDELITY_FILENAME,
)
OFFICIAL_SHA256_PREFIX = "6726825d"
ENV_VAR = "DDPM_INCEPTION_WEIGHTS"
FEATURE_DIM = 2048
NUM_CLASSES = 1008


class InceptionWeightsError(DDPMError, FileNotFoundError):
    """The Inception weights are missing, undownloadable or not the TF-compatible Inception."""


INCEPTION_FILE = WeightsFile(
    label="Inception",
    filename=INCEPTION_FILENAME,
    urls=INCEPTION_URLS,
    sha256_prefix=OFFICIAL_SHA256_PREFIX,
    env_var=ENV_VAR,
    config_key="metrics.inception_weights",
    error=InceptionWeightsError,
    aliases=(TORCH_FIDELITY_FILENAME,),
)


def fetch_instructions(reason: str) -> str:
    """The one-line error of a missing Inception file: what to fetch, where to put it, how to pass it."""
    return INCEPTION_FILE.instructions(reason, hub_checkpoint_dir())


def _download(destination: Path) -> None:
    """Download the weights to ``destination`` (atomic: torch writes a temporary file, then renames)."""
    download(INCEPTION_FILE, destination)


def resolve_inception_weights(weights_path: str | Path | None = None, allow_download: bool = True) -> Path:
    """The path of the Inception weights file, downloading it into torch hub's cache if allowed."""
    return resolve(INCEPTION_FILE, weights_path, allow_download, hub_checkpoint_dir(), _download)


def _build_extractor(weights_path: Path | None) -> nn.Module:
    """torch-fidelity's extractor with the weights of ``weights_path`` read safely (``weights_only=True``),
    or its random init with ``None`` (never a download)."""
    from torch_fidelity.feature_extractor_inceptionv3 import FeatureExtractorInceptionV3

    class _SafelyLoaded(FeatureExtractorInceptionV3):
        # Our own subclass because torch-fidelity's constructor reads the weights file itself with
        # torch.load(weights_only=False), which can run code: we give it an empty file, whose empty
        # state dict is skipped here, and load the weights read by our safe reader afterwards.
        def load_state_dict(self, state_dict: Any, strict: bool = True, assign: bool = False) -> Any:
            return super().load_state_dict(state_dict, strict, assign) if state_dict else None

    state_dict = read_checkpoint(weights_path) if weights_path is not None else None
    with tempfile.TemporaryDirectory() as tmp, redirect_stdout(sys.stderr):
        empty = Path(tmp) / "empty.pth"
        torch.save({}, empty)
        net = _SafelyLoaded(
            "inception-v3-compat", ["2048", "logits_unbiased"], feature_extractor_weights_path=str(empty)
        )
    if state_dict is not None:
        net.load_state_dict(state_dict)
    return net.eval()


def as_uint8_rgb(images: Tensor) -> Tensor:
    """[B, C, H, W] images -> uint8 RGB in [0, 255]: float input is model space [-1, 1] (rounded as the
    official code), grayscale is repeated over 3 channels."""
    if images.dim() != 4:
        raise ValueError(f"expected images of shape [B, C, H, W], got {tuple(images.shape)}")
    if images.dtype != torch.uint8:
        if not images.is_floating_point():
            raise TypeError(f"expected uint8 or float images, got {images.dtype}")
        images = to_uint8(images)
    channels = images.shape[1]
    if channels == 1:
        images = images.expand(-1, 3, -1, -1)
    elif channels != 3:
        raise ValueError(f"Inception needs 1- or 3-channel images, got {channels} channels")
    return images.contiguous()


class InceptionFeatureExtractor(nn.Module):
    """Pool-3 features (FID) and unbiased logits (IS) of the TF-compatible Inception-v3.

    Call it on [B, C, H, W] images (uint8 in [0, 255], or float in model space [-1, 1]); returns
    ``(features [B, 2048], logits [B, 1008])`` in float32. ``weights_sha256`` identifies the weights
    (it keys the reference-statistics cache); ``official`` tells whether they are the paper's.
    """

    feature_dim = FEATURE_DIM
    num_classes = NUM_CLASSES

    def __init__(self, weights_path: str | Path) -> None:
        super().__init__()
        self.weights_path = Path(weights_path)
        self.weights_sha256 = file_sha256(self.weights_path)
        self.official = self.weights_sha256.startswith(OFFICIAL_SHA256_PREFIX)
        try:
            self.net = _build_extractor(self.weights_path)
        except Exception as exc:
            raise InceptionWeightsError(
                fetch_instructions(
                    f"{self.weights_path} is not the TF-compatible Inception-v3 state dict "
                    f"({type(exc).__name__}: {str(exc).splitlines()[0][:200]}); torchvision's ImageNet "
                    "Inception weights do not work"
                )
            ) from None
        if not self.official:
            log.warning(
                "Inception weights %s (sha256 %s...) are not the official %s: FID/IS will not be "
                "comparable with the paper",
                self.weights_path,
                self.weights_sha256[:12],
                INCEPTION_FILENAME,
            )

    @torch.no_grad()
    def forward(self, images: Tensor) -> tuple[Tensor, Tensor]:
        device = next(self.net.parameters()).device
        with strict_fp32():
            features, logits = self.net(as_uint8_rgb(images.to(device)))
        return features, logits


def load_inception(
    weights_path: str | Path | None = None,
    device: torch.device | str = "cpu",
    allow_download: bool = True,
) -> InceptionFeatureExtractor:
    """Resolve the weights (see the module doc) and build the extractor on ``device``."""
    path = resolve_inception_weights(weights_path, allow_download)
    return InceptionFeatureExtractor(path).to(device)


def make_random_inception_weights(path: str | Path, seed: int = 0) -> Path:
    """Save a randomly initialised Inception state dict to ``path`` (for tests and benchmarks: no download).

    Convolutions get Kaiming-normal weights (fan-in, ReLU gain) so activations keep their scale through
    the 94 conv layers (with the default init the features nearly collapse and every FID is ~0); the
    classifier gets unit-variance logits. BatchNorm keeps its identity statistics.
    """
    net = _build_extractor(None)
    generator = torch.Generator().manual_seed(seed)
    for module in net.modules():
        if isinstance(module, nn.Conv2d):
            fan_in = module.weight[0].numel()
            module.weight.data = torch.randn(module.weight.shape, generator=generator) * (2.0 / fan_in) ** 0.5
        elif isinstance(module, nn.Linear):
            fan_in = module.weight.shape[1]
            module.weight.data = torch.randn(module.weight.shape, generator=generator) * (1.0 / fan_in) ** 0.5
            module.bias.data.zero_()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save(net.state_dict(), path)
    return path
