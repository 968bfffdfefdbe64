"""``data.class_labels=true``: (x0, {"class_labels": y}) batches, the same images in the same order."""

from __future__ import annotations

import hydra
import pytest
import torch

from ddpm.cli.task_wrapper import user_error
from ddpm.data import CIFAR10DataModule, DigitsDataModule, ImageFolderDataModule
from ddpm.data.digits import load_digit_images
from ddpm.diffusion.denoiser import split_batch
from ddpm.errors import ConfigError
from tests.data.fakes import write_fake_cifar10, write_fake_image_folder
from tests.data.test_flip import stub_trainer
from tests.helpers import TINY, compose_train


def _first_batches(dm, n: int = 2) -> list:
    loader = dm.train_dataloader()
    loader.sampler.set_epoch(1)
    out = []
    for i, batch in enumerate(loader):
        if i == n:
            break
        out.append(batch)
    return out


def test_digits_labels_are_the_digits_of_the_same_images_in_the_same_order():
    from sklearn.datasets import load_digits

    plain = _first_batches(DigitsDataModule(batch_size=32))
    labelled = _first_batches(DigitsDataModule(batch_size=32, class_labels=True))
    assert all(isinstance(b, torch.Tensor) for b in plain)  # the default stays unlabelled
    images, targets = load_digit_images(), torch.as_tensor(load_digits().target)
    for x_plain, batch in zip(plain, labelled, strict=True):
        x0, cond = split_batch(batch)
        assert torch.equal(x0, x_plain)
        assert cond["class_labels"].dtype == torch.long and cond["class_labels"].shape == (32,)
        # each image's label is the sklearn target of that very image
        rows = [int(torch.nonzero((images == img).flatten(1).all(1))[0]) for img in x0]
        assert torch.equal(cond["class_labels"], targets[rows])
    assert DigitsDataModule(batch_size=4).num_classes == 10


def test_resumed_labelled_loader_continues_with_the_same_labels():
    dm = DigitsDataModule(batch_size=16, class_labels=True)
    loader = dm.train_dataloader()
    it = iter(loader)
    next(it), next(it)
    state = loader.state_dict()
    expected = next(it)
    resumed = DigitsDataModule(batch_size=16, class_labels=True).train_dataloader()
    resumed.load_state_dict(state)
    got = next(iter(resumed))
    assert torch.equal(got[0], expected[0]) and torch.equal(
        got[1]["class_labels"], expected[1]["class_labels"]
    )


def test_flip_of_a_labelled_batch_flips_the_images_and_keeps_the_labels():
    x = torch.rand(64, 1, 4, 5)
    labels = torch.arange(64) % 10
    dm = DigitsDataModule(batch_size=64, random_flip=True, seed=3, class_labels=True)
    dm.trainer = stub_trainer(step=2)
    plain = DigitsDataModule(batch_size=64, random_flip=True, seed=3)
    plain.trainer = stub_trainer(step=2)
    out_x, out_cond = dm.on_after_batch_transfer([x.clone(), {"class_labels": labels}], 0)
    assert torch.equal(out_x, plain.on_after_batch_transfer(x.clone(), 0))
    assert not torch.equal(out_x, x)
    assert out_cond["class_labels"] is labels


def test_cifar10_labels_come_from_the_pickles(tmp_path):
    import pickle

    root = write_fake_cifar10(tmp_path, n_train_per_batch=4, n_test=3)
    dm = CIFAR10DataModule(batch_size=4, data_dir=root, download=False, class_labels=True)
    dm.setup()
    with open(root / "cifar-10-batches-py" / "data_batch_2", "rb") as f:
        entry = pickle.load(f, encoding="bytes")
    image, cond = dm.train_set[5]  # the second image of data_batch_2
    assert int(cond["class_labels"]) == entry[b"labels"][1]
    expected = torch.as_tensor(entry[b"data"][1].reshape(3, 32, 32)).float() / 127.5 - 1
    assert torch.allclose(image, expected)
    assert len(dm.val_set) == 3 and dm.num_classes == 10


def test_image_folder_classes_are_sorted_subfolders(tmp_path):
    write_fake_image_folder(tmp_path / "zebra", n=3, seed=1)
    write_fake_image_folder(tmp_path / "ant", n=4, seed=2, nested=True)
    dm = ImageFolderDataModule(tmp_path, batch_size=2, image_size=8, val_fraction=0.2, class_labels=True)
    assert dm.class_names == ["ant", "zebra"] and dm.num_classes == 2
    dm.setup()
    for dataset in (dm.train_set, dm.val_set):
        for i, path in enumerate(dataset.files):
            assert int(dataset[i][1]["class_labels"]) == (0 if "/ant/" in path else 1)


def test_image_folder_label_follows_a_replacement_image(tmp_path):
    write_fake_image_folder(tmp_path / "a", n=4, seed=1)
    write_fake_image_folder(tmp_path / "b", n=4, seed=2)
    dm = ImageFolderDataModule(
        tmp_path, image_size=8, val_fraction=0.125, class_labels=True, skip_bad_images=True
    )
    dm.setup()
    files = dm.train_set.files
    bad = next(i for i, f in enumerate(files[:-1]) if "/a/" in f and "/b/" in files[i + 1])
    with open(files[bad], "wb") as f:
        f.write(b"not an image")
    _, cond = dm.train_set[bad]
    assert int(cond["class_labels"]) == 1  # the next good file's class, not the bad file's


def test_image_folder_without_subfolders_and_lsun_refuse_class_labels(tmp_path):
    write_fake_image_folder(tmp_path, n=3)
    with pytest.raises(ConfigError, match="class subfolder"):
        ImageFolderDataModule(tmp_path, image_size=8, class_labels=True).setup()
    cfg = compose_train([*TINY, "data=lsun_church", "data.class_labels=true"], tmp_path)
    with pytest.raises(Exception) as exc:  # Hydra wraps it; the entry points print the ConfigError's line
        hydra.utils.instantiate(cfg.data)
    assert "LSUNDataModule has no class labels: drop data.class_labels=true" in str(user_error(exc.value))
