"""A real SLURM cluster on this machine, for the tests marked ``slurm``: one controller and two emulated
compute nodes (``n1``, ``n2``), both on this host.

How it starts (``LocalSlurm.start``, about 5-60 s): everything lives in one temporary directory; the only
file written outside it is /etc/hosts (see 4.):

1. ``munged`` (Debian's ``munge`` package) runs as the ``munge`` user with a fresh 1024-byte key (mode
   400), its socket, pid, log and seed files in ``<dir>/munge``.
2. ``<dir>/slurm.conf`` is generated: this host as controller, and one ``NodeName`` per emulated node
   (``NodeHostname`` this host, loopback address, its own free TCP port, this host's CPUs, 40 % of its
   memory each; 90 % for a single node), every slurmd with its own spool directory, pid file and log
   (``%n``: the node name), ``SlurmUser=root``, ``AuthType=auth/munge`` pointed at our munge socket,
   ``ProctrackType=proctrack/linuxproc``, ``TaskPlugin=task/none``, ``SelectType=select/cons_tres`` with
   ``CR_Core``, ``JobRequeue=1``, ``ReturnToService=2``, no accounting (``sacct`` answers nothing; submitit
   then relies on its result files), and one default partition ``debug`` of all nodes with
   ``OverSubscribe=YES``.
3. ``slurmctld``, then one ``slurmd -N <node>`` per node (Debian's ``slurm-wlm``; all daemonise and write
   pid files into ``<dir>``) are started with ``SLURM_CONF=<dir>/slurm.conf``; ``sinfo`` shows the nodes
   idle within seconds. Client commands (sbatch, srun, scontrol, squeue, submitit) find the cluster
   through ``SLURM_CONF``, which ``env()`` returns.
4. The node names must resolve (a multi-node job's rendezvous address is its first node's name): the
   lines ``127.0.0.1 <node>`` that /etc/hosts lacks are appended to it, and exactly those are removed at
   ``stop()``.

``stop()`` ends exactly the processes it started (the slurmds, slurmctld, munged), by the pids in their
pid files, restores /etc/hosts and removes the directory. It needs root (slurmd runs jobs as the
submitting user, munged runs as ``munge``, /etc/hosts); :func:`why_unavailable` says in one line why a
cluster cannot start here.

By hand: ``python tests/slurm/cluster.py [--nodes N]`` starts one, prints the ``export SLURM_CONF=...``
line to use it from another shell, and stops it on Ctrl-C or SIGTERM.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import pwd
import re
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from pathlib import Path

DAEMONS = ("munged", "slurmctld", "slurmd")
CLIENTS = ("sbatch", "srun", "scontrol", "squeue", "sinfo", "scancel")
HOSTS = Path("/etc/hosts")


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


def _memory_mb(fraction: float) -> int:
    for line in Path("/proc/meminfo").read_text().splitlines():
        if line.startswith("MemTotal:"):
            return int(int(line.split()[1]) / 1024 * fraction)
    return 1024


def _node_lines(nodes: list[str], host: str) -> list[str]:
    """One ``NodeName`` per emulated node (all on this host, each slurmd on its own port)."""
    cpus, memory = os.cpu_count() or 1, _memory_mb(0.9 if len(nodes) == 1 else 0.4)
    return [
        f"NodeName={node} NodeHostname={host} NodeAddr=127.0.0.1 Port={_free_port()} CPUs={cpus} "
        f"RealMemory={memory} State=UNKNOWN"
        for node in nodes
    ]


def _slurm_conf(root: Path, host: str, nodes: list[str], munge_socket: Path) -> str:
    lines = [
        "ClusterName=ddpmtest",
        f"SlurmctldHost={host}(127.0.0.1)",
        "SlurmUser=root",
        "SlurmdUser=root",
        f"SlurmctldPort={_free_port()}",
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
        f"SlurmdSpoolDir={root / 'spool-%n'}",
        f"SlurmctldPidFile={root / 'slurmctld.pid'}",
        f"SlurmdPidFile={root / 'slurmd-%n.pid'}",
        f"SlurmctldLogFile={root / 'slurmctld.log'}",
        f"SlurmdLogFile={root / 'slurmd-%n.log'}",
        "SlurmctldDebug=info",
        "SlurmdDebug=info",
        *_node_lines(nodes, host),
        f"PartitionName=debug Nodes={','.join(nodes)} Default=YES MaxTime=INFINITE State=UP"
        " OverSubscribe=YES",
    ]
    return "\n".join(lines) + "\n"


def add_hosts(names: list[str], hosts: Path = HOSTS) -> str:
    """Append ``127.0.0.1 <name>`` to ``hosts`` for each name it lacks; the text appended ('' if none)."""
    text = hosts.read_text()
    present = {line.strip() for line in text.splitlines()}
    missing = [f"127.0.0.1 {name}" for name in names if f"127.0.0.1 {name}" not in present]
    if not missing:
        return ""
    block = ("" if text.endswith("\n") or not text else "\n") + "\n".join(missing) + "\n"
    with open(hosts, "a") as f:  # in place: /etc/hosts may be a bind mount
        f.write(block)
    return block


def remove_hosts(block: str, hosts: Path = HOSTS) -> None:
    """Take out of ``hosts`` what :func:`add_hosts` appended: the block itself if it still ends the file,
    else the last occurrence of each of its lines."""
    if not block:
        return
    text = hosts.read_text()
    if text.endswith(block):
        text = text[: -len(block)]
    else:
        lines = text.splitlines(keepends=True)
        for entry in filter(None, block.splitlines()):
            where = [i for i, line in enumerate(lines) if line.strip() == entry]
            if where:
                del lines[where[-1]]
        text = "".join(lines)
    with open(hosts, "w") as f:
        f.write(text)


def _run(cmd: list[str], env: dict[str, str] | None = None) -> str:
    done = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=60)
    if done.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)} failed ({done.returncode}): {done.stderr.strip()}")
    return done.stdout


class LocalSlurm:
    """munged + slurmctld + one slurmd per emulated node on this host, configured in a temporary directory."""

    def __init__(self, nodes: int = 2) -> None:
        self.root = Path(tempfile.mkdtemp(prefix="ddpm-slurm-"))
        self.host = socket.gethostname()
        self.nodes = [f"n{i}" for i in range(1, nodes + 1)]
        self.conf = self.root / "slurm.conf"
        self.munge_dir = self.root / "munge"
        self.pid_files = {
            **{f"slurmd -N {node}": self.root / f"slurmd-{node}.pid" for node in self.nodes},
            "slurmctld": self.root / "slurmctld.pid",
            "munged": self.munge_dir / "munged.pid",
        }
        self.hosts_added = ""

    def env(self) -> dict[str, str]:
        """The environment for SLURM client commands (and anything that submits jobs)."""
        return {**os.environ, "SLURM_CONF": str(self.conf)}

    def slurmd_log(self, node: str) -> str:
        """The log of the slurmd of ``node`` ('' before it wrote one)."""
        path = self.root / f"slurmd-{node}.log"
        return path.read_text(errors="replace") if path.exists() else ""

    def launched_on(self, job_id: str) -> set[str]:
        """The nodes whose slurmd launched tasks of a step of ``job_id`` (srun inside the job)."""
        step = re.compile(rf"launch task StepId={re.escape(job_id)}\.\d+ ")
        return {node for node in self.nodes if step.search(self.slurmd_log(node))}

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

    def _node_states(self) -> dict[str, str]:
        out = subprocess.run(
            ["sinfo", "-h", "-N", "-o", "%N %t"], env=self.env(), capture_output=True, text=True
        ).stdout
        return dict(line.split() for line in out.splitlines() if len(line.split()) == 2)

    def start(self, timeout_s: float = 90.0) -> LocalSlurm:
        """Start munged, slurmctld and the slurmds; return once every node is idle (raises otherwise)."""
        try:
            self._start_daemons()
            deadline, states = time.monotonic() + timeout_s, {}
            while time.monotonic() < deadline:
                states = self._node_states()
                if all(states.get(node) in ("idle", "mix", "alloc") for node in self.nodes):
                    return self
                time.sleep(0.5)
            raise RuntimeError(f"the local SLURM nodes did not become idle (sinfo: {states})")
        except BaseException as error:
            logs = (self.root / "slurmctld.log").read_text()[-2000:] if self.conf.exists() else ""
            self.stop()
            raise RuntimeError(f"{error}\n{logs}") from error

    def _start_daemons(self) -> None:
        (self.root / "state").mkdir()
        for node in self.nodes:
            (self.root / f"spool-{node}").mkdir()
        self.hosts_added = add_hosts(self.nodes)
        self._start_munge()
        self.conf.write_text(_slurm_conf(self.root, self.host, self.nodes, self.munge_dir / "munge.socket"))
        _run(["slurmctld"], self.env())
        for node in self.nodes:
            _run(["slurmd", "-N", node], self.env())

    def stop(self) -> None:
        """Stop the daemons this object started, by their pids, restore /etc/hosts, remove the directory."""
        for pid_file in self.pid_files.values():
            if pid_file.exists():
                _terminate(int(pid_file.read_text().split()[0]))
        remove_hosts(self.hosts_added)
        self.hosts_added = ""
        shutil.rmtree(self.root, ignore_errors=True)


def _terminate(pid: int, wait_s: float = 10.0) -> None:
    """SIGTERM ``pid``, SIGKILL it if it is still there after ``wait_s``."""
    try:
        os.kill(pid, signal.SIGTERM)
    except ProcessLookupError:
        return
    deadline = time.monotonic() + wait_s
    while time.monotonic() < deadline:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return
        time.sleep(0.1)
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGKILL)


def main() -> None:
    parser = argparse.ArgumentParser(description="Start a local SLURM cluster until Ctrl-C or SIGTERM.")
    parser.add_argument("--nodes", type=int, default=2, help="emulated compute nodes (default: 2)")
    nodes = parser.parse_args().nodes
    reason = why_unavailable()
    if reason:
        raise SystemExit(f"error: {reason}")
    cluster = LocalSlurm(nodes).start()
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


if __name__ == "__main__":
    main()
