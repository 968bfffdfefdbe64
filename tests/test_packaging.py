"""Configs are found from a checkout and from a non-editable install (they ship inside the wheel)."""

import subprocess
import sys
import zipfile

import pytest

from ddpm.utils.config import config_dir
from tests.helpers import REPO_ROOT


def test_configs_found_in_checkout():
    assert (config_dir() / "train.yaml").is_file()
    assert (config_dir() / "experiment" / "ddpm_cifar10.yaml").is_file()


def test_wheel_ships_configs_and_finds_them(tmp_path):
    build = subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "wheel",
            "--no-deps",
            "-q",
            "-w",
            str(tmp_path / "wheel"),
            str(REPO_ROOT),
        ],
        capture_output=True,
        text=True,
        timeout=300,
    )
    if build.returncode != 0:
        pytest.skip(
            f"cannot build a wheel here (needs hatchling from the package index): {build.stderr[-300:]}"
        )
    wheel = next((tmp_path / "wheel").glob("ddpm-*.whl"))
    with zipfile.ZipFile(wheel) as zf:
        names = set(zf.namelist())
        zf.extractall(tmp_path / "site")
    assert "ddpm/configs/train.yaml" in names
    assert "ddpm/configs/experiment/ddpm_cifar10.yaml" in names
    # import the unpacked (non-editable) copy, from a directory outside the checkout
    probe = subprocess.run(
        [sys.executable, "-c", "import ddpm.utils.config as c; print(c.config_dir())"],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        env={"PYTHONPATH": str(tmp_path / "site")},
    )
    assert probe.returncode == 0, probe.stderr
    assert probe.stdout.strip() == str(tmp_path / "site" / "ddpm" / "configs")
