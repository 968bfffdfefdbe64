"""The local SLURM cluster (see cluster.py) for the tests marked ``slurm``: started once per session,
stopped after the last test by the pids it started; every test is skipped, with the reason, where it
cannot start (no slurm-wlm / munge, not root)."""

from __future__ import annotations

import pytest

from .cluster import LocalSlurm, why_unavailable


@pytest.fixture(scope="session")
def slurm():
    reason = why_unavailable()
    if reason:
        pytest.skip(reason)
    cluster = LocalSlurm().start()
    try:
        yield cluster
    finally:
        cluster.stop()
