"""A truncated or corrupt image: one line naming its key or file, or replaced and counted (skip)."""

import logging

import pytest
import torch
from omegaconf import OmegaConf

from ddpm.cli.ddpm_prepare_lsun import main
from ddpm.cli.task_wrapper import run_task
from ddpm.data import ImageFolderDataModule, LSUNDataModule
from ddpm.data.bad_images import BadImageError
from ddpm.data.prepare_lsun import convert_lmdb

from .fakes import truncate_lmdb_value, write_fake_image_folder, write_fake_lsun_lmdb


@pytest.fixture
def bad_lmdb(tmp_path):
    """church_outdoor with 8 train images, the 4th (sorted key order) a truncated JPEG."""
    path = write_fake_lsun_lmdb(tmp_path / "church_outdoor_train_lmdb", n=8, size=(40, 30))
    write_fake_lsun_lmdb(tmp_path / "church_outdoor_val_lmdb", n=2, size=(30, 40), seed=1)
    key = truncate_lmdb_value(path, 3).decode()
    return tmp_path, key


def _all_batches(dm) -> torch.Tensor:
    dm.setup("fit")
    return torch.cat(list(dm.train_dataloader()))


# With workers, the loader that stopped on the error leaves its prefetched batches unread: whenever it is
# collected, torch waits 5 s for each worker to exit (2 loaders x 2 workers = 20 s of a later test). An error
# raised in a worker is checked by default in test_image_folder_bad_file_is_one_line_naming_it.
@pytest.mark.parametrize("num_workers", [0, pytest.param(2, marks=pytest.mark.slow)])
def test_lsun_bad_image_is_one_line_naming_the_key(bad_lmdb, num_workers, capsys):
    root, key = bad_lmdb
    dm = LSUNDataModule(root=root, image_size=8, batch_size=4, num_workers=num_workers, random_flip=False)
    with pytest.raises(BadImageError) as info:
        _all_batches(dm)
    message = str(info.value)
    assert "\n" not in message and key in message and "data.skip_bad_images=true" in message
    assert message.startswith(f"LSUN image key {key} in ")
    # through the entry points' error contract: one `error:` line, exit code 2
    dm = LSUNDataModule(root=root, image_size=8, batch_size=4, num_workers=num_workers, random_flip=False)
    with pytest.raises(SystemExit) as exit_info:
        run_task(lambda cfg: _all_batches(dm), OmegaConf.create({}))
    assert exit_info.value.code == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith(f"error: LSUN image key {key} in ") and "\n" not in err and "Traceback" not in err


@pytest.mark.parametrize("num_workers", [0, 2])
def test_lsun_skip_bad_images_replaces_and_counts(bad_lmdb, num_workers, caplog):
    root, key = bad_lmdb
    dm = LSUNDataModule(
        root=root,
        image_size=8,
        batch_size=4,
        num_workers=num_workers,
        random_flip=False,
        skip_bad_images=True,
    )
    with caplog.at_level(logging.WARNING, logger="ddpm.data.bad_images"):
        loaded = _all_batches(dm)
        again = torch.cat(list(dm.train_dataloader()))  # epoch 0 again: same substitutes
    assert loaded.shape == (8, 3, 8, 8) and torch.equal(loaded, again)
    assert torch.equal(dm.train_set[3], dm.train_set[4])  # replaced by the next good image
    reports = [r.getMessage() for r in caplog.records if "bad image(s) replaced" in r.getMessage()]
    assert reports == [
        "LSUN church_outdoor train: 1 bad image(s) replaced by the next good image in epoch 0 "
        "(data.skip_bad_images=true)"
    ]  # fmt: skip  (the same count again: debug level)
    if num_workers == 0:  # worker processes log to their own stderr
        assert any(key in r.getMessage() for r in caplog.records)


def test_a_bad_image_is_named_once_per_run_also_by_the_workers_of_later_epochs(bad_lmdb, tmp_path):
    root, key = bad_lmdb
    dm = LSUNDataModule(
        root=root, image_size=8, batch_size=4, num_workers=2, random_flip=False, skip_bad_images=True
    )
    logger = logging.getLogger("ddpm.data.bad_images")
    handler = logging.FileHandler(tmp_path / "warnings.log")  # the forked workers append here too
    logger.addHandler(handler)
    propagate, logger.propagate = logger.propagate, False  # only this handler, in every process
    try:
        dm.setup("fit")
        for _ in range(3):  # new workers every epoch
            list(dm.train_dataloader())
    finally:
        logger.removeHandler(handler)
        handler.close()
        logger.propagate = propagate
    lines = (tmp_path / "warnings.log").read_text().splitlines()
    assert sum(line.startswith(f"LSUN image key {key} in ") for line in lines) == 1
    assert sum("1 bad image(s) replaced" in line for line in lines) == 1


def test_count_of_an_epoch_left_unexhausted_is_logged_when_the_next_starts(bad_lmdb, caplog):
    root, key = bad_lmdb
    dm = LSUNDataModule(root=root, image_size=8, batch_size=8, skip_bad_images=True, random_flip=False)
    dm.setup()
    loader = dm.train_dataloader()
    with caplog.at_level(logging.WARNING, logger="ddpm.data.bad_images"):
        next(iter(loader))  # the epoch's only batch, as Lightning stops: the loader is not exhausted
        assert not [r for r in caplog.records if "bad image(s)" in r.getMessage()]
        next(iter(loader))
    messages = [r.getMessage() for r in caplog.records]
    lmdb = root / "church_outdoor_train_lmdb"
    assert messages[0].startswith(f"LSUN image key {key} in {lmdb} cannot be decoded (OSError: ")
    assert messages[0].endswith("): replaced by the next good image (data.skip_bad_images=true)")
    assert "1 bad image(s) replaced by the next good image in epoch 0" in messages[1]


def test_converter_names_the_bad_key_or_replaces_it(bad_lmdb, capsys):
    root, key = bad_lmdb
    lmdb, out = root / "church_outdoor_train_lmdb", root / "church_outdoor_8"
    with pytest.raises(SystemExit) as info:
        main(
            [
                "--lmdb",
                str(lmdb),
                "--out",
                str(out),
                "--resolution",
                "8",
                "--shard-size",
                "3",
                "--no-progress",
            ]
        )
    assert info.value.code == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: LSUN image key") and key in err and "\n" not in err
    manifest = convert_lmdb(lmdb, out, resolution=8, shard_size=3, skip_bad_images=True, progress=False)
    assert manifest["bad_keys"] == [key]
    shards = LSUNDataModule(root=root, image_size=8, batch_size=4, random_flip=False)
    decoded = LSUNDataModule(root=root, image_size=8, batch_size=4, shards_dir=None, skip_bad_images=True)
    assert torch.equal(_all_batches(shards), _all_batches(decoded))
    # resuming without --skip-bad-images redoes the shard holding the replaced image, and stops there
    with pytest.raises(BadImageError, match=key):
        convert_lmdb(lmdb, out, resolution=8, shard_size=3, progress=False)


def test_held_out_split_with_a_bad_image_is_the_same_from_shards(tmp_path):
    lmdb = write_fake_lsun_lmdb(tmp_path / "cat", n=20, size=(20, 16), fmt="WEBP")
    key = truncate_lmdb_value(lmdb, 0, keep=0.3).decode()  # its next key is held out for val
    out = tmp_path / "cat_8"
    manifest = convert_lmdb(lmdb, out, resolution=8, shard_size=6, skip_bad_images=True, progress=False)
    assert manifest["bad_keys"] == [key]
    kwargs = {"root": tmp_path, "category": "cat", "image_size": 8, "batch_size": 2, "skip_bad_images": True}
    decoded, shards = LSUNDataModule(**kwargs, shards_dir=None), LSUNDataModule(**kwargs)
    decoded.setup()
    shards.setup()
    for split in ("train_set", "val_set"):
        a, b = getattr(decoded, split), getattr(shards, split)
        assert torch.equal(torch.stack(list(a)), torch.stack(list(b))), split


@pytest.fixture
def bad_folder(tmp_path):
    folder = write_fake_image_folder(tmp_path / "imgs", n=10, size=(12, 12))
    truncated = folder / "img_0004.png"
    truncated.write_bytes(truncated.read_bytes()[:60])
    (folder / "img_0007.png").write_bytes(b"this is not a png")
    return folder


def test_image_folder_bad_file_is_one_line_naming_it(bad_folder):
    # one batch of the 9 training images: fewer batches are left prefetched and unread when the error stops
    # the loader, whose collection then waits 5 s (torch's worker exit timeout), not 10 s, in a later test
    dm = ImageFolderDataModule(path=bad_folder, image_size=8, batch_size=9, val_fraction=0.1, num_workers=2)
    with pytest.raises(BadImageError) as info:
        dm.setup()
        for split in ("train_set", "val_set"):
            [getattr(dm, split)[i] for i in range(len(getattr(dm, split)))]
    message = str(info.value)
    assert "\n" not in message and message.startswith("image file ") and "img_000" in message
    assert str(bad_folder) in message and "data.skip_bad_images=true" in message
    with pytest.raises(
        BadImageError, match=r"image file .*img_000[47]\.png cannot be decoded .*\(in a DataLoader"
    ):
        torch.cat(list(dm.train_dataloader())), torch.cat(list(dm.val_dataloader()))


def test_image_folder_skip_bad_images_loads_and_counts(bad_folder, caplog):
    dm = ImageFolderDataModule(
        path=bad_folder, image_size=8, batch_size=3, val_fraction=0.1, skip_bad_images=True, random_flip=False
    )
    with caplog.at_level(logging.WARNING, logger="ddpm.data.bad_images"):
        dm.setup()
        batches = list(dm.train_dataloader())
        list(dm.val_dataloader())
        dm.teardown("fit")
    assert (len(dm.train_set), len(dm.val_set)) == (9, 1)
    assert len(batches) == 3 and all(b.shape == (3, 3, 8, 8) for b in batches)  # every train item loaded
    warned = " ".join(r.getMessage() for r in caplog.records)
    assert "img_0004.png" in warned and "img_0007.png" in warned
    counts = [r.getMessage() for r in caplog.records if "bad image(s) replaced" in r.getMessage()]
    assert sum(int(m.split(": ")[1].split(" ")[0]) for m in counts) == 2  # train epoch + val at teardown
