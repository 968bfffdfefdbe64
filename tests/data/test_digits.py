import numpy as np
import pytest
import torch

from ddpm.data import DigitsDataModule
from ddpm.data.digits import load_digit_images
from ddpm.errors import ConfigError


def test_digits_shapes_range_and_split_sizes():
    dm = DigitsDataModule(batch_size=32, image_size=16)
    assert dm.image_shape == (1, 16, 16)
    assert dm.random_flip is False  # mirrored digits are not digits
    dm.setup("fit")
    assert len(dm.train_set) + len(dm.val_set) == 1797
    assert (len(dm.train_set), len(dm.val_set)) == (1617, 180)
    batch = next(iter(dm.train_dataloader()))
    assert batch.shape == (32, 1, 16, 16) and batch.dtype == torch.float32
    val = next(iter(dm.val_dataloader()))
    assert val.shape == (32, 1, 16, 16)
    assert len(dm.train_dataloader()) == 1617 // 32  # drop_last


def test_digits_value_range_background_and_ink():
    x = load_digit_images(8)
    assert x.shape == (1797, 1, 8, 8)
    assert x.min() == -1.0 and x.max() == 1.0  # background 0 -> -1, full ink 16 -> +1
    from sklearn.datasets import load_digits

    raw = torch.from_numpy(load_digits().images.astype(np.float32))
    torch.testing.assert_close(x[:, 0], raw / 16 * 2 - 1)
    up = load_digit_images(16)
    assert up.shape == (1797, 1, 16, 16)
    assert up.min() >= -1.0 and up.max() <= 1.0
    assert (up[:, :, 0, 0] == -1.0).float().mean() > 0.9  # corners are background


def test_resize_digits_is_the_datas_own_resize():
    """An 8x8 digit (or sample) resized to 16x16 is exactly the data's 16x16 digit; the resize is
    torch's bilinear interpolation with half-pixel centres, clamped (checked against numpy)."""
    from ddpm.data.digits import resize_digits

    small, big = load_digit_images(8), load_digit_images(16)
    assert torch.equal(resize_digits(small, 16), big)
    assert torch.equal(resize_digits(big, 16), big) and resize_digits(big, 16) is not big
    # bilinear, align_corners=False, by hand: output pixel i samples the input at (i + 0.5) / 2 - 0.5
    x = small[:5, 0].double().numpy()
    pos = np.clip((np.arange(16) + 0.5) / 2 - 0.5, 0, 7)
    lo, frac = np.floor(pos).astype(int), pos - np.floor(pos)
    hi = np.minimum(lo + 1, 7)
    rows = x[:, lo] * (1 - frac)[None, :, None] + x[:, hi] * frac[None, :, None]
    ref = rows[:, :, lo] * (1 - frac) + rows[:, :, hi] * frac
    np.testing.assert_allclose(big[:5, 0].numpy(), np.clip(ref, -1, 1), atol=1e-6)
    samples = torch.linspace(-1.5, 1.5, 2 * 64).view(2, 1, 8, 8)  # out-of-range samples are clamped
    assert resize_digits(samples, 16).abs().max() == 1.0


def test_digits_split_is_deterministic_and_disjoint():
    a, b = DigitsDataModule(batch_size=8), DigitsDataModule(batch_size=8, seed=123)
    a.setup(), b.setup()
    # the split does not depend on the training seed
    torch.testing.assert_close(a.val_set.images, b.val_set.images)
    torch.testing.assert_close(a.train_set.images, b.train_set.images)
    c = DigitsDataModule(batch_size=8, split_seed=1)
    c.setup()
    assert not torch.equal(a.val_set.images, c.val_set.images)
    # disjoint: no validation image is also a training image
    train = {t.numpy().tobytes() for t in a.train_set.images}
    assert not any(v.numpy().tobytes() in train for v in a.val_set.images)


def test_digits_bad_config():
    with pytest.raises(ConfigError, match="val_fraction"):
        DigitsDataModule(batch_size=8, val_fraction=0.0)
    with pytest.raises(ConfigError, match="batch_size"):
        DigitsDataModule(batch_size=0)
