import pickle

import numpy as np
import pytest
import torch
from PIL import Image

from ddpm.data import LMDBImageDataset, LSUNDataModule
from ddpm.data.lsun import list_lmdb_keys
from ddpm.errors import DatasetNotFoundError

from .fakes import write_fake_lsun_lmdb


def _two_tone_in_frame(width: int, height: int) -> Image.Image:
    """Red frame outside the centred square; inside it, left half green, right half blue."""
    array = np.zeros((height, width, 3), dtype=np.uint8)
    array[..., 0] = 255
    side = min(width, height)
    left, top = (width - side) // 2, (height - side) // 2
    square = array[top : top + side, left : left + side]
    square[...] = 0
    square[:, : side // 2, 1] = 255
    square[:, side // 2 :, 2] = 255
    return Image.fromarray(array)


def test_lsun_shapes_and_splits(tmp_path):
    write_fake_lsun_lmdb(tmp_path / "church_outdoor_train_lmdb", n=10, size=(40, 30))
    write_fake_lsun_lmdb(tmp_path / "church_outdoor_val_lmdb", n=3, size=(30, 40), seed=1)
    dm = LSUNDataModule(root=tmp_path, category="church_outdoor", image_size=16, batch_size=4)
    assert dm.image_shape == (3, 16, 16)
    dm.prepare_data()
    dm.setup("fit")
    assert (len(dm.train_set), len(dm.val_set)) == (10, 3)
    batch = next(iter(dm.train_dataloader()))
    assert batch.shape == (4, 3, 16, 16) and batch.dtype == torch.float32
    assert batch.min() >= -1 and batch.max() <= 1
    assert [b.shape[0] for b in dm.val_dataloader()] == [3]


def test_lsun_without_val_lmdb_holds_out_part_of_train(tmp_path):
    write_fake_lsun_lmdb(tmp_path / "cat", n=20, size=(20, 20), fmt="WEBP")  # object-category layout
    dm = LSUNDataModule(root=tmp_path, category="cat", image_size=8, batch_size=4, random_flip=False)
    dm.setup()
    assert (len(dm.train_set), len(dm.val_set)) == (18, 2)  # at most a tenth
    assert set(dm.train_set.keys.tolist()).isdisjoint(dm.val_set.keys.tolist())
    again = LSUNDataModule(root=tmp_path, category="cat", image_size=8, batch_size=4, seed=5)
    again.setup()
    assert dm.val_set.keys.tolist() == again.val_set.keys.tolist()
    assert dm.val_set[0].shape == (3, 8, 8)


@pytest.mark.parametrize("size", [(40, 30), (30, 40)])
def test_lsun_center_crop(tmp_path, size):
    image = _two_tone_in_frame(*size)
    path = write_fake_lsun_lmdb(tmp_path / "bedroom_train_lmdb", images=[image, image], fmt="PNG")
    dataset = LMDBImageDataset(path, image_size=16)
    x = dataset[0]
    assert x.shape == (3, 16, 16)
    # the red frame is cropped away entirely
    assert torch.all(x[0] == -1.0)
    # left half green, right half blue, away from the edge (Lanczos reaches 3 output pixels either side)
    assert torch.all(x[1, :, :5] == 1.0) and torch.all(x[2, :, :5] == -1.0)
    assert torch.all(x[2, :, 11:] == 1.0) and torch.all(x[1, :, 11:] == -1.0)
    # exactly PIL's crop of the centred square + Lanczos (StyleGAN2 create_lsun's ANTIALIAS) resize
    side = min(size)
    left, top = (size[0] - side) // 2, (size[1] - side) // 2
    ref = image.crop((left, top, left + side, top + side)).resize((16, 16), Image.Resampling.LANCZOS)
    ref = torch.from_numpy(np.asarray(ref).astype(np.float32)).permute(2, 0, 1) / 127.5 - 1
    assert torch.equal(x, ref)


def test_lsun_missing_lmdb_is_a_clear_error(tmp_path):
    dm = LSUNDataModule(root=tmp_path, category="church_outdoor", image_size=16, batch_size=2)
    with pytest.raises(
        DatasetNotFoundError, match=r"church_outdoor_train_lmdb .*download\.py -c church_outdoor"
    ):
        dm.prepare_data()
    with pytest.raises(DatasetNotFoundError, match="github.com/fyu/lsun") as info:
        dm.setup("fit")
    assert "\n" not in str(info.value)


def test_lmdb_dataset_pickles_and_works_in_workers(tmp_path):
    path = write_fake_lsun_lmdb(tmp_path / "church_outdoor_train_lmdb", n=8, size=(12, 12))
    dataset = LMDBImageDataset(path, image_size=12)
    first = dataset[0]  # opens the environment in this process
    clone = pickle.loads(pickle.dumps(dataset))
    assert torch.equal(clone[0], first)
    keys = list_lmdb_keys(path)
    assert len(keys) == 8 and list(keys) == sorted(keys)
    loader = torch.utils.data.DataLoader(dataset, batch_size=4, num_workers=2)
    batches = torch.cat(list(loader))
    assert torch.equal(batches, torch.stack([dataset[i] for i in range(8)]))
