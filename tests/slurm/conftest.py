"""Fixtures of the tests marked ``slurm``: the local SLURM cluster (see cluster.py; two emulated nodes on
this host), started once per session and stopped after the last test by the pids it started; every test
is skipped, with the reason, where it cannot start (no slurm-wlm / munge, not root). The tests run their
commands as a user does, from the root of a clean clone of the repository."""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest

from .cluster import LocalSlurm, why_unavailable
from .jobs import DDP, ONE_NODE, DdpJob, make_checkout, run_ddp_job


@pytest.fixture(scope="session")
def slurm() -> Iterator[LocalSlurm]:
    reason = why_unavailable()
    if reason:
        pytest.skip(reason)
    cluster = LocalSlurm(nodes=2).start()
    try:
        yield cluster
    finally:
        cluster.stop()


@pytest.fixture(scope="session")
def pristine(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A clean clone of the working tree (tracked and untracked, not ignored files); nothing runs in it."""
    return make_checkout(tmp_path_factory.mktemp("pristine") / "ddpm")


def _copy(pristine: Path, parent: Path) -> Path:
    return Path(shutil.copytree(pristine, parent / "ddpm", symlinks=True))


@pytest.fixture(scope="session")
def clone(pristine: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The session's clone, where the documented commands run one after the other."""
    return _copy(pristine, tmp_path_factory.mktemp("clone"))


@pytest.fixture
def checkout(pristine: Path, tmp_path: Path) -> Path:
    """A clone of one test's own: the start directory of its commands."""
    return _copy(pristine, tmp_path)


@pytest.fixture(scope="session")
def one_node_ddp(slurm: LocalSlurm, pristine: Path, tmp_path_factory: pytest.TempPathFactory) -> DdpJob:
    """The 2-process DDP run as a 1-node, 2-task job (srun through train.sbatch), run once per session:
    the reference of the Lightning-DDP and the 2-node tests."""
    return run_ddp_job(slurm, _copy(pristine, tmp_path_factory.mktemp("one_node")), ONE_NODE, DDP)
