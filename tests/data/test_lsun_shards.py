"""LSUN as the paper had it: StyleGAN2's create_lsun steps, and the ready-sized shards."""

import io
import json

import numpy as np
import pytest
import torch
from PIL import Image

from ddpm.cli.ddpm_prepare_lsun import main
from ddpm.data import LSUNDataModule
from ddpm.data.lsun import LMDBImageDataset, shared_env
from ddpm.data.lsun_shards import MANIFEST, ShardImageDataset
from ddpm.data.prepare_lsun import convert_lmdb

from .fakes import write_fake_lsun_lmdb

SIZES = [(45, 30), (30, 47), (41, 64), (33, 33), (64, 41)]  # (width, height): odd margins, both ways


def _smooth_images(n: int, seed: int = 0) -> list[Image.Image]:
    """Non-square RGB images with structure (upsampled noise), sizes from SIZES."""
    rng = np.random.default_rng(seed)
    images = []
    for i in range(n):
        width, height = SIZES[i % len(SIZES)]
        small = rng.integers(0, 256, size=(height // 4 + 1, width // 4 + 1, 3), dtype=np.uint8)
        images.append(Image.fromarray(small).resize((width, height), Image.Resampling.BILINEAR))
    return images


def _create_lsun_reference(value: bytes, resolution: int) -> np.ndarray:
    """StyleGAN2 dataset_tool.py create_lsun, written out step by step (PIL decode instead of cv2)."""
    img = np.asarray(Image.open(io.BytesIO(value)).convert("RGB"))
    crop = np.min(img.shape[:2])
    img = img[
        (img.shape[0] - crop) // 2 : (img.shape[0] + crop) // 2,
        (img.shape[1] - crop) // 2 : (img.shape[1] + crop) // 2,
    ]
    img = Image.fromarray(img, "RGB")
    img = img.resize((resolution, resolution), Image.LANCZOS)  # = ANTIALIAS in Pillow < 10
    img = np.asarray(img)
    return img.transpose([2, 0, 1])  # HWC => CHW


def _lmdb_values(path) -> list[bytes]:
    with shared_env(str(path)).begin() as txn:
        return [bytes(v) for _, v in txn.cursor()]


@pytest.fixture
def church(tmp_path):
    root = tmp_path / "lsun"
    write_fake_lsun_lmdb(root / "church_outdoor_train_lmdb", images=_smooth_images(12))
    write_fake_lsun_lmdb(root / "church_outdoor_val_lmdb", images=_smooth_images(3, seed=1), seed=1)
    return root


@pytest.mark.parametrize("resolution", [16, 24])
def test_preprocessing_is_create_lsun_pixel_for_pixel(church, resolution):
    path = church / "church_outdoor_train_lmdb"
    dataset = LMDBImageDataset(path, image_size=resolution)
    values = _lmdb_values(path)
    assert len(values) == len(dataset) == 12
    for i, value in enumerate(values):
        reference = _create_lsun_reference(value, resolution)
        pixels = dataset.pixels(i)
        assert pixels.dtype == np.uint8 and pixels.shape == (3, resolution, resolution)
        assert np.array_equal(pixels, reference), i
        assert torch.equal(dataset[i], torch.from_numpy(reference.astype(np.float32)) / 127.5 - 1)
    assert not np.array_equal(  # and not the former bicubic resize
        dataset.pixels(0), _bicubic(values[0], resolution)
    )


def _bicubic(value: bytes, resolution: int) -> np.ndarray:
    img = np.asarray(Image.open(io.BytesIO(value)).convert("RGB"))
    crop = min(img.shape[:2])
    top, left = (img.shape[0] - crop) // 2, (img.shape[1] - crop) // 2
    square = Image.fromarray(np.ascontiguousarray(img[top : top + crop, left : left + crop]))
    return np.asarray(square.resize((resolution, resolution), Image.Resampling.BICUBIC)).transpose(2, 0, 1)


def test_shards_give_the_lmdb_images(church):
    out = church / "church_outdoor_16"  # where shards_dir=auto looks
    manifest = convert_lmdb(
        church / "church_outdoor_train_lmdb", out, resolution=16, shard_size=5, progress=False
    )
    assert manifest["num_items"] == 12 and manifest["num_shards"] == 3 and manifest["bad_keys"] == []
    lmdb_dm = LSUNDataModule(root=church, image_size=16, batch_size=4, shards_dir=None)
    shard_dm = LSUNDataModule(root=church, image_size=16, batch_size=4)  # auto
    explicit = LSUNDataModule(root=church, image_size=16, batch_size=4, shards_dir=str(out))
    for dm in (lmdb_dm, shard_dm, explicit):
        dm.setup("fit")
    assert isinstance(lmdb_dm.train_set, LMDBImageDataset)
    assert isinstance(shard_dm.train_set, ShardImageDataset)
    assert isinstance(explicit.train_set, ShardImageDataset)
    expected = torch.stack([lmdb_dm.train_set[i] for i in range(12)])
    assert torch.equal(torch.stack([shard_dm.train_set[i] for i in range(12)]), expected)
    assert torch.equal(
        torch.cat(list(shard_dm.train_dataloader())), torch.cat(list(lmdb_dm.train_dataloader()))
    )
    workers = LSUNDataModule(root=church, image_size=16, batch_size=4, num_workers=2)
    assert torch.equal(
        torch.cat(list(workers.train_dataloader())), torch.cat(list(lmdb_dm.train_dataloader()))
    )


def test_shards_hold_out_the_same_split_without_val_lmdb(tmp_path):
    write_fake_lsun_lmdb(tmp_path / "cat", images=_smooth_images(20), fmt="WEBP")
    convert_lmdb(tmp_path / "cat", tmp_path / "cat_8", resolution=8, shard_size=7, progress=False)
    lmdb_dm = LSUNDataModule(root=tmp_path, category="cat", image_size=8, batch_size=4, shards_dir=None)
    shard_dm = LSUNDataModule(root=tmp_path, category="cat", image_size=8, batch_size=4)
    lmdb_dm.setup()
    shard_dm.setup()
    assert (len(shard_dm.train_set), len(shard_dm.val_set)) == (18, 2)
    for split in ("train_set", "val_set"):
        a, b = getattr(lmdb_dm, split), getattr(shard_dm, split)
        assert torch.equal(torch.stack(list(a)), torch.stack(list(b)))


def test_converter_resumes(church, caplog):
    lmdb, out = church / "church_outdoor_train_lmdb", church / "shards"
    convert_lmdb(lmdb, out, resolution=8, shard_size=4, progress=False)
    first = {p.name: p.read_bytes() for p in out.glob("lsun_*.npz")}
    assert sorted(first) == ["lsun_00000.npz", "lsun_00001.npz", "lsun_00002.npz"]
    # an interrupted run: one shard lost, one half-written, no manifest yet
    (out / "lsun_00001.npz").unlink()
    (out / "lsun_00002.npz").write_bytes(first["lsun_00002.npz"][:100])
    (out / MANIFEST).unlink()
    stamp = (out / "lsun_00000.npz").stat().st_mtime_ns
    with pytest.raises(Exception, match="no finished LSUN conversion"):
        LSUNDataModule(root=church, image_size=8, batch_size=2, shards_dir=str(out)).prepare_data()
    convert_lmdb(lmdb, out, resolution=8, shard_size=4, progress=False)
    assert (out / "lsun_00000.npz").stat().st_mtime_ns == stamp  # kept, not rewritten
    assert {p.name: p.read_bytes() for p in out.glob("lsun_*.npz")} == first
    assert json.loads((out / MANIFEST).read_text())["num_items"] == 12
    # the DataModule refuses shards of another resolution
    with pytest.raises(Exception, match="are 8x8, but data.image_size=16"):
        LSUNDataModule(root=church, image_size=16, batch_size=2, shards_dir=str(out)).setup()


def test_converter_command_and_its_errors(church, capsys):
    out = church / "cli"
    main(["--lmdb", str(church / "church_outdoor_train_lmdb"), "--out", str(out), "--resolution", "8",
          "--shard-size", "5", "--workers", "2", "--no-progress"])  # fmt: skip
    assert "12 images at 8x8 in 3 shards" in capsys.readouterr().out
    assert ShardImageDataset(out, 8).pixels(11).shape == (3, 8, 8)
    with pytest.raises(SystemExit) as info:
        main(["--lmdb", str(church / "nope"), "--out", str(out), "--no-progress"])
    assert info.value.code == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: ") and "nope is not an LMDB directory" in err and "\n" not in err
