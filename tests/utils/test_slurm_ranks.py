"""ddpm-eval's process group from SLURM's rank variables (srun), next to torchrun's (no cluster needed)."""

import pytest

from ddpm.utils.distributed import first_host, torch_env_from_slurm

SRUN_TASK = {  # what srun sets in task 3 of a 2-node x 2-task step (read off a real srun step)
    "SLURM_JOB_ID": "123456",
    "SLURM_PROCID": "3",
    "SLURM_LOCALID": "1",
    "SLURM_NTASKS": "4",
    "SLURM_STEP_NUM_TASKS": "4",
    "SLURM_STEP_NODELIST": "gpu[07-08]",
    "SLURM_JOB_NODELIST": "gpu[07-08]",
}


def test_srun_task_gets_torchrun_variables():
    assert torch_env_from_slurm(SRUN_TASK) == {
        "RANK": "3",
        "WORLD_SIZE": "4",
        "LOCAL_RANK": "1",
        "MASTER_ADDR": "gpu07",
        "MASTER_PORT": str(15000 + 3456),  # Lightning's rule: every task computes the same port
    }


def test_the_step_size_counts_not_the_allocation():
    # srun -n 2 inside an allocation of 4 tasks: a world of 2
    env = torch_env_from_slurm({**SRUN_TASK, "SLURM_STEP_NUM_TASKS": "2", "SLURM_PROCID": "1"})
    assert (env["RANK"], env["WORLD_SIZE"]) == ("1", "2")


@pytest.mark.parametrize(
    "environ",
    [
        {},  # no cluster: one process
        # the batch script itself: SLURM_PROCID and SLURM_NTASKS, but no step variables
        {k: v for k, v in SRUN_TASK.items() if not k.startswith("SLURM_STEP")},
        {**SRUN_TASK, "WORLD_SIZE": "2", "RANK": "0"},  # torchrun inside a SLURM job wins
    ],
)
def test_nothing_changes_outside_an_srun_step(environ):
    assert torch_env_from_slurm(environ) == {}


def test_an_explicit_rendezvous_wins():
    env = torch_env_from_slurm({**SRUN_TASK, "MASTER_ADDR": "10.0.0.1", "MASTER_PORT": "29500"})
    assert (env["MASTER_ADDR"], env["MASTER_PORT"]) == ("10.0.0.1", "29500")


@pytest.mark.parametrize(
    ("nodelist", "host"),
    [("vm", "vm"), ("a,b", "a"), ("gpu[07-09,12],cpu1", "gpu07"), ("node[3]", "node3"), ("n1,n[2-4]", "n1")],
)
def test_first_host_of_a_node_list(nodelist, host):
    assert first_host(nodelist) == host
