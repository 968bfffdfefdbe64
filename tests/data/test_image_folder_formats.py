"""Your own images as they come: RGBA, grayscale, palette, 16-bit, non-square and odd-sized files, the log
line saying what was done to them, a file given as the folder, a corrupt file, and loader settings that
fit the machine."""

from __future__ import annotations

import logging
import warnings
from types import SimpleNamespace

import numpy as np
import pytest
import torch
from PIL import Image

from ddpm.data import ImageFolderDataModule
from ddpm.data.bad_images import BadImageError
from ddpm.data.image_folder import survey_images
from ddpm.data.loaders import auto_num_workers, auto_pin_memory
from ddpm.data.transforms import pil_to_model
from ddpm.errors import DatasetNotFoundError

from .shapes import write_shapes_folder


def test_mixed_formats_load_to_one_shape_and_the_log_says_once_what_was_done(tmp_path, caplog):
    folder = write_shapes_folder(tmp_path / "imgs", n=10)  # 2 of each: RGBA, JPEG, L, 48x36, 33x33 BMP
    dm = ImageFolderDataModule(path=folder, image_size=32, batch_size=9, val_fraction=0.1)
    with caplog.at_level(logging.INFO):
        dm.setup("fit")
    lines = [r.getMessage() for r in caplog.records if "image folder" in r.getMessage()]
    assert lines == [
        f"image folder {folder}: 10 images loaded as 3x32x32: 2 with alpha (dropped), 2 grayscale (copied to "
        "RGB), 2 not square (centre-cropped), 6 not 32x32 (resized)"
    ]
    batch = next(iter(dm.train_dataloader()))
    assert batch.shape == (9, 3, 32, 32) and batch.min() >= -1 and batch.max() <= 1
    gray = ImageFolderDataModule(path=folder, image_size=16, grayscale=True, batch_size=9, val_fraction=0.1)
    gray.setup()
    assert gray.train_set[0].shape == (1, 16, 16)
    assert survey_images(sorted(folder.iterdir()), 16, 1).endswith(
        "8 in colour (converted to grayscale), 2 not square (centre-cropped), 10 not 16x16 (resized)"
    )


def test_survey_of_images_needing_nothing_and_of_a_large_folder(tmp_path):
    for i in range(4):
        Image.new("RGB", (8, 8), (i, 0, 0)).save(tmp_path / f"{i}.png")
    files = sorted(tmp_path.iterdir())
    assert survey_images(files, 8, 3) == "4 images, all 3x8x8 already"
    assert survey_images(files * 600, 8, 3) == "800 of 2400 images surveyed, all 3x8x8 already"


def test_alpha_is_dropped_and_palette_and_16_bit_images_convert_exactly():
    rgba = Image.new("RGBA", (2, 2), (255, 0, 0, 0))  # fully transparent red: its colour is kept
    assert torch.equal(pil_to_model(rgba, 2)[:, 0, 0], torch.tensor([1.0, -1.0, -1.0]))
    palette = Image.new("P", (2, 2), 1)
    palette.putpalette([0, 0, 0, 0, 255, 0] + [0] * 762)
    palette.info["transparency"] = 0
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # PIL warns on a palette with transparency converted to RGB
        assert torch.equal(pil_to_model(palette, 2)[:, 0, 0], torch.tensor([-1.0, 1.0, -1.0]))
    wide = Image.fromarray(np.full((2, 2), 65535, dtype=np.uint16))  # 16-bit white: PIL alone clips to 255
    assert torch.equal(pil_to_model(wide, 2, channels=1), torch.ones(1, 2, 2))
    mid = Image.fromarray(np.full((2, 2), 257 * 51, dtype=np.uint16))
    assert pil_to_model(mid, 2, channels=3)[:, 0, 0].tolist() == pytest.approx([51 / 127.5 - 1] * 3)


def test_a_file_given_as_the_folder_is_named_as_a_file(tmp_path):
    image = tmp_path / "cat.png"
    Image.new("RGB", (4, 4)).save(image)
    with pytest.raises(
        DatasetNotFoundError, match=rf"data.path {image} is a file, not a folder: .*{tmp_path}"
    ):
        ImageFolderDataModule(path=image).setup()


def test_a_corrupt_image_is_one_line_naming_it_and_the_fix(tmp_path):
    folder = write_shapes_folder(tmp_path / "imgs", n=4)
    (folder / "broken.jpg").write_bytes(b"not a jpeg")
    dm = ImageFolderDataModule(path=folder, image_size=8, batch_size=1, val_fraction=0.2, random_flip=False)
    dm.setup()
    with pytest.raises(BadImageError) as info:
        [dm.train_set[i] for i in range(len(dm.train_set))] + [dm.val_set[0]]
    message = str(info.value)
    assert message.startswith(f"image file {folder / 'broken.jpg'} cannot be decoded (")
    assert message.endswith(
        "): remove it, or replace it by the next good image with data.skip_bad_images=true"
    )
    assert "\n" not in message and "prepare_lsun" not in message


@pytest.mark.filterwarnings("ignore:This DataLoader will create 7 worker")  # 16 cores faked on this machine
def test_loader_workers_and_pinning_fit_the_machine(tmp_path, monkeypatch):
    import lightning.fabric.utilities.data as fabric_data

    for cores, devices, workers in ((2, 1, 1), (1, 1, 1), (16, 1, 8), (16, 8, 1), (64, 4, 8)):
        monkeypatch.setattr(fabric_data, "_num_cpus_available", lambda cores=cores: cores)
        assert auto_num_workers(devices) == workers  # >= 2 whenever Lightning's bound is; <= cores - 1
    assert auto_pin_memory(torch.device("cuda", 0)) and not auto_pin_memory(torch.device("cpu"))
    assert not auto_pin_memory(None)
    monkeypatch.setattr(fabric_data, "_num_cpus_available", lambda: 2)
    folder = write_shapes_folder(tmp_path / "imgs", n=5)
    dm = ImageFolderDataModule(path=folder, image_size=8, batch_size=2, num_workers=None, val_fraction=0.2)
    loader = dm.train_dataloader()
    assert (loader.num_workers, loader.pin_memory) == (1, False)  # no trainer: CPU, one process
    gpus = SimpleNamespace(
        num_devices=2,
        world_size=1,
        global_rank=0,
        strategy=SimpleNamespace(root_device=torch.device("cuda", 0)),
    )
    monkeypatch.setattr(fabric_data, "_num_cpus_available", lambda: 16)
    dm.trainer = gpus
    assert (dm.val_dataloader().num_workers, dm.val_dataloader().pin_memory) == (7, True)  # 16 // 2 - 1
    fixed = ImageFolderDataModule(path=folder, image_size=8, batch_size=2, num_workers=0, pin_memory=True)
    assert (fixed.val_dataloader().num_workers, fixed.val_dataloader().pin_memory) == (0, True)
