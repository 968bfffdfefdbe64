"""A real single-node SLURM cluster on this machine, for the tests marked ``slurm``.

How it starts (``LocalSlurm.start``, about 5-60 s): everything lives in one temporary directory, nothing
is written under /etc:

1. ``munged`` (Debian's ``munge`` package) runs as the ``munge`` user with a fresh 1024-byte key (mode
   400), its socket, pid, log and seed files in ``<dir>/munge``.
2. ``<dir>/slurm.conf`` is generated: this host as controller and as the only node (its CPUs, 90% of its
   memory, loopback address, two free TCP ports), ``SlurmUser=root``, ``AuthType=auth/munge`` pointed at
   our munge socket, ``ProctrackType=proctrack/linuxproc``, ``TaskPlugin=task/none``,
   ``SelectType=select/cons_tres`` with ``CR_Core``, ``JobRequeue=1``, ``ReturnToService=2``, no
   accounting (``sacct`` answers nothing; submitit then relies on its result files), and one default
   partition ``debug`` with ``OverSubscribe=YES``.
3. ``slurmctld`` then ``slurmd`` (Debian's ``slurm-wlm``; both daemonise and write pid files into
   ``<dir>``) are started with ``SLURM_CONF=<dir>/slurm.conf``; ``sinfo`` shows the node idle within
   seconds. Client commands (sbatch, srun, scontrol, squeue, submitit) find the cluster through
   ``SLURM_CONF``, which ``env()`` returns.

``stop()`` ends exactly the processes it started (slurmd, slurmctld, munged), by the pids in their pid
files, and removes the directory. It needs root (slurmd runs jobs as the submitting user and munged as
``munge``); :func:`why_unavailable` says in one line why a cluster cannot start here.

By hand: ``python tests/slurm/cluster.py`` starts one, prints the ``export SLURM_CONF=...`` line to use
it from another shell, and stops it on Ctrl-C or SIGTERM.
"""

from __future__ import annotations

import os
import pwd
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from pathlib import Path

DAEMONS = ("munged", "slurmctld", "slurmd")
CLIENTS = ("sbatch", "srun", "scontrol", "squeue", "sinfo", "scancel")


def why_unavailable() -> str | None:
    """One line saying why a local SLURM cannot start here, or None when it can."""
    missing = [name for name in DAEMONS + CLIENTS if shutil.which(name) is None]
    for name in DAEMONS:
        if name not in missing and not Path(shutil.which(name) or "").exists():
            missing.append(name)
    if missing:
        return (
            f"{', '.join(missing)} not found: install Debian's slurm-wlm and munge "
            "(apt-get install -y slurm-wlm munge) to run the slurm tests"
        )
    if os.geteuid() != 0:
        return "the local SLURM cluster needs root (slurmd runs jobs as their user, munged as munge)"
    try:
        pwd.getpwnam("munge")
    except KeyError:
        return "no 'munge' user: reinstall the munge package"
    return None


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _real_memory_mb() -> int:
    for line in Path("/proc/meminfo").read_text().splitlines():
        if line.startswith("MemTotal:"):
            return int(int(line.split()[1]) / 1024 * 0.9)
    return 1024


def _slurm_conf(root: Path, host: str, munge_socket: Path) -> str:
    cpus = os.cpu_count() or 1
    lines = [
        "ClusterName=ddpmtest",
        f"SlurmctldHost={host}(127.0.0.1)",
        "SlurmUser=root",
        "SlurmdUser=root",
        f"SlurmctldPort={_free_port()}",
        f"SlurmdPort={_free_port()}",
        "AuthType=auth/munge",
        "CredType=cred/munge",
        f"AuthInfo=socket={munge_socket}",
        "ProctrackType=proctrack/linuxproc",
        "TaskPlugin=task/none",
        "SelectType=select/cons_tres",
        "SelectTypeParameters=CR_Core",
        "MpiDefault=none",
        "ReturnToService=2",
        "JobRequeue=1",
        "SchedulerType=sched/backfill",
        "SchedulerParameters=sched_interval=1",
        "MessageTimeout=30",
        "KillWait=10",
        "InactiveLimit=0",
        "MinJobAge=300",
        "AccountingStorageType=accounting_storage/none",
        "JobAcctGatherType=jobacct_gather/none",
        "JobCompType=jobcomp/none",
        "SlurmdParameters=config_overrides",
        f"StateSaveLocation={root / 'state'}",
        f"SlurmdSpoolDir={root / 'spool'}",
        f"SlurmctldPidFile={root / 'slurmctld.pid'}",
        f"SlurmdPidFile={root / 'slurmd.pid'}",
        f"SlurmctldLogFile={root / 'slurmctld.log'}",
        f"SlurmdLogFile={root / 'slurmd.log'}",
        "SlurmctldDebug=info",
        "SlurmdDebug=info",
        f"NodeName={host} NodeAddr=127.0.0.1 CPUs={cpus} RealMemory={_real_memory_mb()} State=UNKNOWN",
        f"PartitionName=debug Nodes={host} Default=YES MaxTime=INFINITE State=UP OverSubscribe=YES",
    ]
    return "\n".join(lines) + "\n"


def _run(cmd: list[str], env: dict[str, str] | None = None) -> str:
    done = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=60)
    if done.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)} failed ({done.returncode}): {done.stderr.strip()}")
    return done.stdout


class LocalSlurm:
    """munged + slurmctld + slurmd on this host, configured in a temporary directory."""

    def __init__(self) -> None:
        self.root = Path(tempfile.mkdtemp(prefix="ddpm-slurm-"))
        self.host = socket.gethostname()
        self.conf = self.root / "slurm.conf"
        self.munge_dir = self.root / "munge"
        self.pid_files = {
            "slurmd": self.root / "slurmd.pid",
            "slurmctld": self.root / "slurmctld.pid",
            "munged": self.munge_dir / "munged.pid",
        }

    def env(self) -> dict[str, str]:
        """The environment for SLURM client commands (and anything that submits jobs)."""
        return {**os.environ, "SLURM_CONF": str(self.conf)}

    def _start_munge(self) -> None:
        munge = pwd.getpwnam("munge")
        self.munge_dir.mkdir()
        self.munge_dir.chmod(0o755)  # munged wants its socket directory reachable by all
        key = self.munge_dir / "munge.key"
        key.write_bytes(os.urandom(1024))
        key.chmod(0o400)
        for path in (self.munge_dir, key):
            os.chown(path, munge.pw_uid, munge.pw_gid)
        self.root.chmod(0o755)
        d = self.munge_dir
        cmd = (
            f"/usr/sbin/munged --key-file={key} --socket={d / 'munge.socket'} --pid-file={d / 'munged.pid'} "
            f"--log-file={d / 'munged.log'} --seed-file={d / 'munged.seed'}"
        )
        _run(["su", "-s", "/bin/sh", "munge", "-c", cmd])

    def start(self, timeout_s: float = 90.0) -> LocalSlurm:
        """Start munged, slurmctld and slurmd; return once the node is idle (raises otherwise)."""
        for sub in ("state", "spool"):
            (self.root / sub).mkdir()
        self._start_munge()
        self.conf.write_text(_slurm_conf(self.root, self.host, self.munge_dir / "munge.socket"))
        env = self.env()
        _run(["slurmctld"], env)
        _run(["slurmd"], env)
        deadline = time.monotonic() + timeout_s
        state = ""
        while time.monotonic() < deadline:
            state = subprocess.run(
                ["sinfo", "-h", "-N", "-o", "%t"], env=env, capture_output=True, text=True
            ).stdout.strip()
            if state in ("idle", "mix", "alloc"):
                return self
            time.sleep(0.5)
        logs = (self.root / "slurmctld.log").read_text()[-2000:] if self.conf.exists() else ""
        self.stop()
        raise RuntimeError(f"the local SLURM node did not become idle (sinfo: {state!r})\n{logs}")

    def stop(self) -> None:
        """Stop the daemons this object started, by their pids, and remove its directory."""
        for name in ("slurmd", "slurmctld", "munged"):
            pid_file = self.pid_files[name]
            if not pid_file.exists():
                continue
            pid = int(pid_file.read_text().split()[0])
            try:
                os.kill(pid, signal.SIGTERM)
            except ProcessLookupError:
                continue
            for _ in range(100):
                try:
                    os.kill(pid, 0)
                except ProcessLookupError:
                    break
                time.sleep(0.1)
            else:
                os.kill(pid, signal.SIGKILL)
        shutil.rmtree(self.root, ignore_errors=True)


if __name__ == "__main__":
    reason = why_unavailable()
    if reason:
        raise SystemExit(f"error: {reason}")
    cluster = LocalSlurm().start()
    print(f"export SLURM_CONF={cluster.conf}   # Ctrl-C (or SIGTERM) stops the cluster", flush=True)

    def _stop(signum, frame):
        raise SystemExit(0)

    # a background job ignores SIGINT: SIGTERM stops it too
    signal.signal(signal.SIGINT, _stop)
    signal.signal(signal.SIGTERM, _stop)
    try:
        signal.pause()
    finally:
        cluster.stop()
