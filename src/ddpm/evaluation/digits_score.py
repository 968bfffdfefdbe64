"""The digits score: sample quality on the embedded digits, measured by a small classifier of real digits.

FID and the Inception Score need an ImageNet network and thousands of images; the quickstart's 8x8
digits need neither. A small CNN is trained on the real digits (scikit-learn's 8x8 digits with the
exact preprocessing of :func:`ddpm.data.digits.load_digit_images`, [-1, 1]) in a few seconds on the CPU
at first use, deterministically (fixed seed, no download), and then scores N images by:

* ``score``: the Inception-Score analogue exp(E_x KL(p(y|x) || p(y))) (Salimans et al. 2016, eq. in
  Sec. 4) with p(y) the mean of p(y|x) over the N images: 1 (junk or one class) to 10 (confident,
  balanced);
* ``confidence``: E_x max_y p(y|x); ``class_balance``: exp(H(p(y))) / 10, 1 for balanced classes;
* ``frechet``: the Fréchet distance (Heusel et al. 2017, FID's formula) between Gaussians fitted to the
  classifier's penultimate features of the images and of all 1,797 real digits.

The real digits are the reference: score them (``digits_score(load_digit_images()[:1000])``) beside a
model's samples. Conditional models use :func:`predict`: accuracy = how often a sample is classified as
the requested digit.
"""

from __future__ import annotations

import functools
import math
from dataclasses import asdict, dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ddpm.evaluation.metrics import FeatureStatistics, fid

NUM_CLASSES = 10
IMAGE_SIZE = 16
FEATURE_DIM = 64
TRAIN_SEED = 0
TRAIN_EPOCHS = 12
TRAIN_BATCH = 64


class DigitsClassifier(nn.Module):
    """Two conv blocks (16x16 -> 8x8 -> 4x4), a 64-dim feature layer and a 10-way linear head."""

    def __init__(self) -> None:
        super().__init__()
        layers = [nn.Conv2d(1, 32, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2)]
        layers += [nn.Conv2d(32, 64, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2), nn.Flatten()]
        layers += [nn.Linear(64 * 4 * 4, FEATURE_DIM), nn.ReLU()]
        self.body = nn.Sequential(*layers)
        self.head = nn.Linear(FEATURE_DIM, NUM_CLASSES)

    def features(self, x: Tensor) -> Tensor:
        """Penultimate features [N, 64] (the Fréchet distance's space)."""
        return self.body(x)

    def forward(self, x: Tensor) -> Tensor:
        """Logits [N, 10]."""
        return self.head(self.body(x))


def _shift(x: Tensor, generator: torch.Generator) -> Tensor:
    """Each image moved by up to one pixel in each direction (background -1 fills the border)."""
    padded = F.pad(x, (1, 1, 1, 1), value=-1.0)
    offsets = torch.randint(0, 3, (x.shape[0], 2), generator=generator)
    rows = [padded[i, :, dy : dy + IMAGE_SIZE, dx : dx + IMAGE_SIZE] for i, (dy, dx) in enumerate(offsets)]
    return torch.stack(rows)


def digit_splits() -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """(train images, train labels, held-out images, held-out labels): the digits data module's split."""
    from sklearn.datasets import load_digits

    from ddpm.data.digits import load_digit_images
    from ddpm.data.splits import num_val_items, split_indices

    images = load_digit_images(IMAGE_SIZE)
    labels = torch.from_numpy(load_digits().target).long()
    train, val = split_indices(len(labels), num_val_items(len(labels), 0.1), 0)
    train, val = torch.from_numpy(train), torch.from_numpy(val)
    return images[train], labels[train], images[val], labels[val]


def train_classifier(images: Tensor, labels: Tensor, epochs: int = TRAIN_EPOCHS) -> DigitsClassifier:
    """Adam on cross-entropy with one-pixel shifts, from seed ``TRAIN_SEED``: the same net every call."""
    generator = torch.Generator().manual_seed(TRAIN_SEED)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(TRAIN_SEED)
        net = DigitsClassifier()
    with torch.enable_grad():  # also when first used inside a no_grad scoring call
        _fit(net, images, labels, epochs, generator)
    return net.eval().requires_grad_(False)


def _fit(net: nn.Module, images: Tensor, labels: Tensor, epochs: int, generator: torch.Generator) -> None:
    optimizer = torch.optim.Adam(net.parameters(), lr=2e-3)
    for _ in range(epochs):
        order = torch.randperm(len(labels), generator=generator)
        for batch in order.split(TRAIN_BATCH):
            loss = F.cross_entropy(net(_shift(images[batch], generator)), labels[batch])
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()


@functools.lru_cache(maxsize=1)
def digits_classifier() -> DigitsClassifier:
    """The classifier, trained on the training split at first use (a few seconds) and kept in memory."""
    train_x, train_y, _, _ = digit_splits()
    return train_classifier(train_x, train_y)


def _checked(images: Tensor) -> Tensor:
    """[N, 1, S, S] images as float32 [N, 1, 16, 16] on the CPU: any S goes through the digits' own
    resize (:func:`ddpm.data.digits.resize_digits`), so 8x8 samples meet the real digits at 16x16."""
    from ddpm.data.digits import resize_digits

    if images.ndim != 4 or images.shape[1] != 1 or images.shape[2] != images.shape[3]:
        shape = tuple(images.shape)
        raise ValueError(f"the digits score takes [N, 1, S, S] images in [-1, 1], got {shape}")
    return resize_digits(images.detach().to("cpu"), IMAGE_SIZE)


@torch.no_grad()
def _apply(images: Tensor, batch_size: int = 500) -> tuple[Tensor, Tensor]:
    """(features [N, 64], probabilities [N, 10]) of the images, in batches."""
    net = digits_classifier()
    feats = [net.features(chunk) for chunk in _checked(images).split(batch_size)]
    features = torch.cat(feats) if feats else torch.zeros(0, FEATURE_DIM)
    return features, net.head(features).softmax(dim=1)


def predict_proba(images: Tensor) -> Tensor:
    """p(y | x) [N, 10] of [N, 1, S, S] images in [-1, 1] (classified at 16x16, see :func:`_checked`)."""
    return _apply(images)[1]


def predict(images: Tensor) -> Tensor:
    """The most likely digit [N] (int64) of each image."""
    return predict_proba(images).argmax(dim=1)


@dataclass(frozen=True)
class DigitsScore:
    """The digits score of N images (see the module docstring)."""

    num_images: int
    score: float
    confidence: float
    class_balance: float
    frechet: float

    def as_dict(self) -> dict[str, float]:
        return asdict(self)


def classifier_score(probs: Tensor) -> tuple[float, float, float]:
    """(exp(E KL(p(y|x) || p(y))), E max p(y|x), exp(H(p(y))) / 10) of probabilities [N, 10], float64."""
    p = probs.to(torch.float64)
    marginal = p.mean(dim=0)
    kl = (p * (torch.log(p.clamp_min(1e-30)) - torch.log(marginal.clamp_min(1e-30)))).sum(dim=1)
    entropy = -(marginal * torch.log(marginal.clamp_min(1e-30))).sum()
    confidence = p.max(dim=1).values.mean().item()
    return math.exp(kl.mean().item()), confidence, math.exp(entropy.item()) / NUM_CLASSES


def feature_statistics(features: Tensor) -> FeatureStatistics:
    """Float64 mean/covariance sums of feature rows (the Fréchet distance's Gaussian)."""
    stats = FeatureStatistics(dim=FEATURE_DIM)
    stats.update(features)
    return stats


@functools.lru_cache(maxsize=1)
def real_statistics() -> FeatureStatistics:
    """Feature statistics of all 1,797 real digits: the reference of :func:`digits_score`."""
    from ddpm.data.digits import load_digit_images

    return feature_statistics(_apply(load_digit_images(IMAGE_SIZE))[0])


def digits_score(images: Tensor) -> DigitsScore:
    """The digits score of [N, 1, S, S] images in [-1, 1] (N >= 2), compared at 16x16 (:func:`_checked`)."""
    if images.shape[0] < 2:
        raise ValueError("the digits score needs at least 2 images")
    features, probs = _apply(images)
    score, confidence, balance = classifier_score(probs)
    frechet = fid(feature_statistics(features), real_statistics())
    return DigitsScore(images.shape[0], score, confidence, balance, frechet)
