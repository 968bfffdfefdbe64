"""The digits classifier: a small CNN of the real digits, trained once per process, deterministically.

It is trained on the digits data module's training split (scikit-learn's 8x8 digits with the exact
preprocessing of :func:`ddpm.data.digits.load_digit_images`, [-1, 1], at 16x16) in a few seconds on the CPU
at first use (fixed seed, one-pixel shifts, no download), and kept in memory. Images of any square size
are classified at 16x16 after the digits' own resize, so 8x8 samples meet the real digits as the data
module makes them.
"""

from __future__ import annotations

import functools

import torch
import torch.nn.functional as F
from torch import Tensor, nn

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
    """Adam on cross-entropy with one-pixel shifts, from seed ``TRAIN_SEED``, on one thread: the same net
    every call, whatever the machine's thread count."""
    generator = torch.Generator().manual_seed(TRAIN_SEED)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(TRAIN_SEED)
        net = DigitsClassifier()
    threads = torch.get_num_threads()
    # one thread: CPU kernels' reductions split by thread count, and the rounding they change grows over
    # training into a different net (scores 4 % apart with 1 and 2 threads), so a job and its srun tasks
    # (or two machines) would score the same samples differently
    torch.set_num_threads(1)
    try:
        with torch.enable_grad():  # also when first used inside a no_grad scoring call
            _fit(net, images, labels, epochs, generator)
    finally:
        torch.set_num_threads(threads)
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
def classify(images: Tensor, batch_size: int = 500) -> tuple[Tensor, Tensor]:
    """(features [N, 64], probabilities p(y | x) [N, 10]) of [N, 1, S, S] images in [-1, 1], in batches."""
    net = digits_classifier()
    feats = [net.features(chunk) for chunk in _checked(images).split(batch_size)]
    features = torch.cat(feats) if feats else torch.zeros(0, FEATURE_DIM)
    return features, net.head(features).softmax(dim=1)


def predict_proba(images: Tensor) -> Tensor:
    """p(y | x) [N, 10] of [N, 1, S, S] images in [-1, 1] (classified at 16x16, see :func:`_checked`)."""
    return classify(images)[1]


def predict(images: Tensor) -> Tensor:
    """The most likely digit [N] (int64) of each image."""
    return predict_proba(images).argmax(dim=1)


__all__ = [
    "FEATURE_DIM",
    "IMAGE_SIZE",
    "NUM_CLASSES",
    "DigitsClassifier",
    "classify",
    "digit_splits",
    "digits_classifier",
    "predict",
    "predict_proba",
    "train_classifier",
]
