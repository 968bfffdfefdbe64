import pytest
import torch
from PIL import Image

from ddpm.data import ImageFolderDataModule
from ddpm.data.image_folder import find_images
from ddpm.errors import DatasetNotFoundError

from .fakes import write_fake_image_folder


def test_image_folder_recursive_shapes_and_split(tmp_path):
    folder = write_fake_image_folder(tmp_path / "imgs", n=20, size=(24, 20), nested=True)
    (folder / "notes.txt").write_text("not an image")
    Image.new("RGB", (10, 10), (255, 255, 255)).save(folder / "sub" / "UPPER.JPG")
    assert len(find_images(folder)) == 21
    dm = ImageFolderDataModule(path=folder, image_size=16, batch_size=4, val_fraction=0.2)
    assert dm.image_shape == (3, 16, 16)
    dm.setup("fit")
    assert (len(dm.train_set), len(dm.val_set)) == (17, 4)
    assert set(dm.train_set.files).isdisjoint(dm.val_set.files)
    batch = next(iter(dm.train_dataloader()))
    assert batch.shape == (4, 3, 16, 16) and batch.dtype == torch.float32
    assert batch.min() >= -1 and batch.max() <= 1
    other = ImageFolderDataModule(path=folder, image_size=16, batch_size=4, val_fraction=0.2, seed=9)
    other.setup()
    assert other.val_set.files == dm.val_set.files  # deterministic, independent of the training seed


def test_image_folder_grayscale_and_exact_values(tmp_path):
    folder = tmp_path / "gray"
    folder.mkdir()
    for i, level in enumerate([0, 51, 255]):
        Image.new("RGB", (9, 7), (level, level, level)).save(folder / f"{i}.png")
    dm = ImageFolderDataModule(path=folder, image_size=5, grayscale=True, batch_size=1, val_fraction=0.3)
    assert dm.image_shape == (1, 5, 5)
    dm.setup()
    values = sorted(dm.train_set[i][0, 0, 0].item() for i in range(len(dm.train_set)))
    values += [dm.val_set[0][0, 0, 0].item()]
    assert sorted(values) == pytest.approx([-1.0, 51 / 127.5 - 1, 1.0])
    assert dm.val_set[0].shape == (1, 5, 5)


def test_image_folder_missing_or_empty_is_a_clear_error(tmp_path):
    with pytest.raises(DatasetNotFoundError, match=r"does not exist: set data\.path"):
        ImageFolderDataModule(path=tmp_path / "nope", batch_size=2).setup()
    (tmp_path / "empty").mkdir()
    (tmp_path / "empty" / "readme.md").write_text("x")
    with pytest.raises(DatasetNotFoundError, match="holds no images"):
        ImageFolderDataModule(path=tmp_path / "empty", batch_size=2).prepare_data()
