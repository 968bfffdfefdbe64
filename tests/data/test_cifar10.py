import pickle
import urllib.error

import numpy as np
import pytest
import torch
import torchvision

from ddpm.data import CIFAR10DataModule
from ddpm.errors import DatasetNotFoundError

from .fakes import write_fake_cifar10


@pytest.fixture
def no_download(monkeypatch):
    """Any download attempt fails the test."""

    def forbidden(*args, **kwargs):
        raise AssertionError("a download was attempted")

    monkeypatch.setattr(torchvision.datasets.CIFAR10, "download", forbidden)
    monkeypatch.setattr(torchvision.datasets.utils, "download_and_extract_archive", forbidden)
    monkeypatch.setattr(torchvision.datasets.utils, "download_url", forbidden)


def test_fake_cifar10_files_are_official_format(tmp_path):
    root = write_fake_cifar10(tmp_path, n_train_per_batch=4, n_test=3)
    folder = root / "cifar-10-batches-py"
    names = {"data_batch_1", "data_batch_2", "data_batch_3", "data_batch_4", "data_batch_5"}
    assert names | {"test_batch", "batches.meta"} == {p.name for p in folder.iterdir()}
    with open(folder / "data_batch_1", "rb") as f:
        entry = pickle.load(f, encoding="bytes")
    assert entry[b"data"].dtype == np.uint8 and entry[b"data"].shape == (4, 3072)
    assert len(entry[b"labels"]) == 4
    with open(folder / "batches.meta", "rb") as f:
        meta = pickle.load(f, encoding="bytes")
    assert meta[b"label_names"][0] == b"airplane"


def test_cifar10_values_layout_and_sizes(tmp_path, no_download):
    root = write_fake_cifar10(tmp_path, n_train_per_batch=6, n_test=5, seed=3)
    dm = CIFAR10DataModule(batch_size=4, data_dir=root, download=True)  # present: no download
    assert dm.image_shape == (3, 32, 32)
    dm.prepare_data()
    dm.setup("fit")
    assert (len(dm.train_set), len(dm.val_set)) == (30, 5)

    folder = root / "cifar-10-batches-py"
    with open(folder / "data_batch_2", "rb") as f:
        raw2 = pickle.load(f, encoding="bytes")[b"data"]
    with open(folder / "test_batch", "rb") as f:
        raw_test = pickle.load(f, encoding="bytes")[b"data"]
    # item 1 of data_batch_2 is training item 6 + 1; pixel (c, y, x) is byte c*1024 + y*32 + x
    x = dm.train_set[7]
    assert x.shape == (3, 32, 32) and x.dtype == torch.float32
    for c, yy, xx in [(0, 0, 0), (1, 5, 7), (2, 31, 30), (0, 17, 3)]:
        expected = np.float32(raw2[1, c * 1024 + yy * 32 + xx]) / np.float32(127.5) - np.float32(1)
        assert x[c, yy, xx].item() == expected
    full = torch.from_numpy(raw2[1].reshape(3, 32, 32).astype(np.float32)) / 127.5 - 1
    assert torch.equal(x, full)
    assert torch.equal(dm.val_set[4], torch.from_numpy(raw_test[4].reshape(3, 32, 32)).float() / 127.5 - 1)
    assert x.min() >= -1 and x.max() <= 1

    batch = next(iter(dm.train_dataloader()))
    assert batch.shape == (4, 3, 32, 32)
    assert len(dm.train_dataloader()) == 30 // 4
    val_batches = list(dm.val_dataloader())
    assert [b.shape[0] for b in val_batches] == [4, 1]
    assert torch.equal(torch.cat(val_batches), torch.stack([dm.val_set[i] for i in range(5)]))


def test_cifar10_missing_without_download_is_a_clear_error(tmp_path, no_download):
    dm = CIFAR10DataModule(batch_size=4, data_dir=tmp_path / "nowhere", download=False)
    with pytest.raises(DatasetNotFoundError, match=r"CIFAR-10 not found in .*nowhere.*data\.download=true"):
        dm.prepare_data()
    with pytest.raises(DatasetNotFoundError, match="place cifar-10-batches-py/ there"):
        dm.setup("fit")
    assert not (tmp_path / "nowhere").exists()


def test_cifar10_partial_data_names_missing_files(tmp_path, no_download):
    root = write_fake_cifar10(tmp_path, n_train_per_batch=2, n_test=2)
    (root / "cifar-10-batches-py" / "data_batch_3").unlink()
    dm = CIFAR10DataModule(batch_size=2, data_dir=root, download=False)
    with pytest.raises(DatasetNotFoundError, match="missing data_batch_3"):
        dm.setup()


def test_cifar10_failed_download_is_a_clear_error(tmp_path, monkeypatch):
    def offline(self):
        raise urllib.error.URLError("[Errno -3] Temporary failure in name resolution")

    monkeypatch.setattr(torchvision.datasets.CIFAR10, "download", offline)
    dm = CIFAR10DataModule(batch_size=4, data_dir=tmp_path, download=True)
    with pytest.raises(DatasetNotFoundError, match=r"download failed \(URLError") as info:
        dm.prepare_data()
    assert "\n" not in str(info.value)
    assert str(tmp_path) in str(info.value)
