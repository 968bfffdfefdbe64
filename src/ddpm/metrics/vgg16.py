"""The VGG-16 feature space of precision/recall as Kynkaenniemi et al. (2019) and torch-fidelity's ``prc``
define it, with offline-friendly weight resolution.

torch-fidelity's ``FeatureExtractorVGG16`` (registered as ``vgg16``) takes uint8 images in [0, 255],
resizes them to 224x224 with the TF1-compatible bilinear resize, normalises them with ImageNet's mean and
std and returns the 4096-d second fully connected layer; its ``prc`` reads that layer after the ReLU
(``fc2_relu``: ``FeatureExtractorVGG16.get_default_feature_layer_for_metric("prc")``), so do we.

The weights are torchvision's ImageNet VGG-16, ``vgg16-397923af.pth`` (the file torch-fidelity itself
loads; ``397923af`` is the prefix of its SHA-256). Resolution order, as the Inception's
(:mod:`ddpm.metrics.weights_file`): an explicit path, the ``DDPM_VGG16_WEIGHTS`` environment variable,
the file in torch hub's checkpoint directory (where torchvision keeps it), then a download (unless
disabled); without weights and without internet, :class:`VGG16WeightsError` says which file to fetch
and where to put it.
"""

from __future__ import annotations

import logging
import sys
from contextlib import redirect_stdout
from pathlib import Path

import torch
from torch import Tensor, nn

from ddpm.errors import CheckpointError, DDPMError
from ddpm.io.checkpoint_file import read_checkpoint
from ddpm.metrics.inception import as_uint8_rgb
from ddpm.metrics.weights_file import WeightsFile, download, file_sha256, hub_checkpoint_dir, resolve
from ddpm.utils.precision import strict_fp32

log = logging.getLogger(__name__)

VGG16_FILENAME = "vgg16-397923af.pth"
VGG16_URL = "https://download.pytorch.org/models/" + VGG16_FILENAME
OFFICIAL_SHA256_PREFIX = "397923af"
ENV_VAR = "DDPM_VGG16_WEIGHTS"
FEATURE_LAYER = "fc2_relu"  # torch-fidelity's layer for prc
FEATURE_SPACE = "vgg16_fc2_relu"  # how reports name it
FEATURE_DIM = 4096


class VGG16WeightsError(DDPMError, FileNotFoundError):
    """The VGG-16 weights are missing, undownloadable, unsafe or not torchvision's VGG-16."""


VGG16_FILE = WeightsFile(
    label="VGG-16",
    filename=VGG16_FILENAME,
    urls=(VGG16_URL,),
    sha256_prefix=OFFICIAL_SHA256_PREFIX,
    env_var=ENV_VAR,
    config_key="metrics.vgg16_weights",
    error=VGG16WeightsError,
)


def fetch_instructions(reason: str) -> str:
    """The one-line error of a missing VGG-16 file: what to fetch, where to put it, how to pass it."""
    return VGG16_FILE.instructions(reason, hub_checkpoint_dir())


def _download(destination: Path) -> None:
    download(VGG16_FILE, destination)


def resolve_vgg16_weights(weights_path: str | Path | None = None, allow_download: bool = True) -> Path:
    """The path of the VGG-16 weights file, downloading it into torch hub's cache if allowed."""
    return resolve(VGG16_FILE, weights_path, allow_download, hub_checkpoint_dir(), _download)


def _build_extractor(weights_path: Path) -> nn.Module:
    """torch-fidelity's VGG-16 extractor (``fc2_relu``) with the weights of ``weights_path``, read safely."""
    from torch_fidelity.feature_extractor_vgg16 import FeatureExtractorVGG16

    read_checkpoint(weights_path)  # weights_only=True: a file carrying pickled code is refused here
    # torch-fidelity then reads the same file with torch.load(weights_only=False). That is safe now: the
    # restricted unpickler accepted every object in the file (tensors and plain containers only, no
    # callable), so the unrestricted one rebuilds the same objects from the same bytes and runs no code.
    with redirect_stdout(sys.stderr):
        path = str(weights_path)
        net = FeatureExtractorVGG16("vgg16", [FEATURE_LAYER], feature_extractor_weights_path=path)
    return net.eval()


class VGG16FeatureExtractor(nn.Module):
    """The 4096-d ``fc2_relu`` features of torch-fidelity's VGG-16: the feature space of precision/recall.

    Call it on [B, C, H, W] images (uint8 in [0, 255], or float in model space [-1, 1]; grayscale is
    repeated over 3 channels); returns ``(features [B, 4096], logits [B, 0])`` in float32, the interface
    of the feature loop (:mod:`ddpm.metrics.features`; VGG-16 gives no logits here). ``weights_sha256``
    identifies the weights (it keys the reference-feature cache); ``official`` tells whether they are
    torchvision's.
    """

    name = "vgg16"
    feature_dim = FEATURE_DIM
    feature_space = FEATURE_SPACE

    def __init__(self, weights_path: str | Path) -> None:
        super().__init__()
        self.weights_path = Path(weights_path)
        self.weights_sha256 = file_sha256(self.weights_path)
        self.official = self.weights_sha256.startswith(OFFICIAL_SHA256_PREFIX)
        try:
            self.net = _build_extractor(self.weights_path)
        except CheckpointError as exc:  # pickled code, truncated or garbage
            raise VGG16WeightsError(str(exc)) from None
        except Exception as exc:
            reason = (
                f"{self.weights_path} is not torchvision's VGG-16 state dict "
                f"({type(exc).__name__}: {str(exc).splitlines()[0][:200]})"
            )
            raise VGG16WeightsError(fetch_instructions(reason)) from None
        if not self.official:
            log.warning(
                "VGG-16 weights %s (sha256 %s...) are not torchvision's %s: precision/recall will not be "
                "comparable with published values",
                self.weights_path,
                self.weights_sha256[:12],
                VGG16_FILENAME,
            )

    @torch.no_grad()
    def forward(self, images: Tensor) -> tuple[Tensor, Tensor]:
        device = next(self.net.parameters()).device
        with strict_fp32():
            (features,) = self.net(as_uint8_rgb(images.to(device)))
        return features, features.new_zeros(features.shape[0], 0)


def load_vgg16(
    weights_path: str | Path | None = None,
    device: torch.device | str = "cpu",
    allow_download: bool = True,
) -> VGG16FeatureExtractor:
    """Resolve the weights (see the module doc) and build the extractor on ``device``."""
    return VGG16FeatureExtractor(resolve_vgg16_weights(weights_path, allow_download)).to(device)


def make_random_vgg16_weights(path: str | Path, seed: int = 0) -> Path:
    """Save a randomly initialised torchvision VGG-16 state dict to ``path`` (for tests: no download).

    torchvision's own initialisation (Kaiming-normal convolutions, N(0, 0.01) linear layers), seeded:
    the file has the layout of ``vgg16-397923af.pth`` (about 530 MB: the architecture is fixed).
    """
    import torchvision

    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        net = torchvision.models.vgg16(weights=None)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save(net.state_dict(), path)
    return path


__all__ = [
    "FEATURE_SPACE",
    "VGG16_FILENAME",
    "VGG16FeatureExtractor",
    "VGG16WeightsError",
    "load_vgg16",
    "make_random_vgg16_weights",
    "resolve_vgg16_weights",
]
