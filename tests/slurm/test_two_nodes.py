"""Two nodes (two slurmds on this host, see cluster.py): a ``--nodes=2`` job with one task per node
(trainer=slurm_cpu trainer.devices=1 trainer.num_nodes=2) forms the same 2-process DDP group as a 1-node
2-task job (SLURM_NODEID 0 and 1 instead of 0 and 0), ends with the same weights, EMA and Adam state, bit
for bit, and still does after a pre-timeout signal and a requeue."""

from __future__ import annotations

import time

import pytest

from .jobs import (
    DDP_TWO_NODES,
    TWO_NODES,
    DdpJob,
    assert_resumed,
    assert_same_end,
    job_output,
    preempt_and_requeue,
    preemption_report,
    run_ddp_job,
    sbatch,
    step_log,
)
from .probe import read_steps

pytestmark = pytest.mark.slurm


def assert_same_losses(steps_a, steps_b) -> None:
    """Both ranks of two DDP runs made the same steps with the same losses, in a 2-process group."""
    for rank in (0, 1):
        a, b = read_steps(steps_a, rank), read_steps(steps_b, rank)
        assert {r["world_size"] for r in a} == {r["world_size"] for r in b} == {2}
        assert [(r["step"], r["loss"]) for r in a] == [(r["step"], r["loss"]) for r in b], rank


def node_ids(steps, restart: int | None = None) -> set[str]:
    """The SLURM_NODEIDs the two ranks ran on (in launch ``restart`` only, if given)."""
    return {
        r["node_id"]
        for rank in (0, 1)
        for r in read_steps(steps, rank)
        if restart is None or r["restart"] == restart
    }


def test_two_node_job_equals_one_node_two_tasks(slurm, one_node_ddp: DdpJob, checkout):
    two = run_ddp_job(slurm, checkout, TWO_NODES, DDP_TWO_NODES)
    assert node_ids(one_node_ddp.steps) == {"0"} and node_ids(two.steps) == {"0", "1"}
    assert slurm.launched_on(two.job) == {"n1", "n2"}
    assert_same_losses(one_node_ddp.steps, two.steps)
    assert_same_end(one_node_ddp.run_dir, two.run_dir)
    print(f"\n2 tasks on one node: {one_node_ddp.timings()}\n1 task on 2 nodes:   {two.timings()}")


def test_two_node_job_preempted_requeues_to_the_same_end(slurm, one_node_ddp: DdpJob, checkout):
    steps, submitted = checkout / "probe", time.time()
    job, _ = sbatch(slurm, checkout, TWO_NODES, [*DDP_TWO_NODES, *step_log(steps)])
    run_dir = checkout / "logs" / "train" / "runs" / f"slurm-{job}"
    cycle = preempt_and_requeue(slurm, job, steps, run_dir, after_steps=1)  # ranks check every 10 steps
    log = job_output(checkout, job)
    final = cycle.final
    assert final["JobState"] == "COMPLETED" and final["Restarts"] == "1", (final, log[-4000:])

    before, after = assert_resumed(read_steps(steps, 0), log)
    assert_resumed(read_steps(steps, 1), log)
    assert node_ids(steps, restart=0) == node_ids(steps, restart=1) == {"0", "1"}
    assert_same_losses(one_node_ddp.steps, steps)
    assert_same_end(one_node_ddp.run_dir, run_dir)
    print(preemption_report(cycle, before, after, submitted, log))
