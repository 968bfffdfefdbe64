"""The few ``torch.distributed`` collectives the evaluation and the metrics need (no-ops without a process
group), and joining the group from torchrun's or SLURM's (srun) rank variables.

Every function here must be called by *every* rank (they are collectives under DDP); none of them
is ever called on rank 0 only, which is what makes a rank-0-only metric hang.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping, Sequence

import torch
import torch.distributed as dist
from torch import Tensor


def first_host(nodelist: str) -> str:
    """The first host of a SLURM node list: ``gpu[07-09,12],cpu1`` -> ``gpu07``, ``a,b`` -> ``a``."""
    match = re.match(r"([^,\[]*)(?:\[([^,\-\]]+))?", nodelist.strip())
    if match is None or not match.group(0):
        raise ValueError(f"cannot read a host from the SLURM node list {nodelist!r}")
    return match.group(1) + (match.group(2) or "")


def torch_env_from_slurm(environ: Mapping[str, str]) -> dict[str, str]:
    """torchrun's variables for a process started by ``srun`` (one task per GPU); ``{}`` elsewhere.

    Under srun every task has ``SLURM_PROCID`` (global rank), ``SLURM_LOCALID`` (rank on its node) and
    ``SLURM_STEP_NUM_TASKS`` (the step's tasks; the batch script itself has no step variables, and a
    step may use fewer tasks than the allocation's ``SLURM_NTASKS``). The rendezvous is the first host
    of the step and port 15000 + the job id's last 4 digits (Lightning's SLURM rule, so every task
    agrees without talking); a ``MASTER_ADDR`` / ``MASTER_PORT`` already set wins, and so does torchrun
    (``WORLD_SIZE`` set).
    """
    if "WORLD_SIZE" in environ or "SLURM_STEP_NUM_TASKS" not in environ or "SLURM_PROCID" not in environ:
        return {}
    env = {
        "RANK": environ["SLURM_PROCID"],
        "WORLD_SIZE": environ["SLURM_STEP_NUM_TASKS"],
        "LOCAL_RANK": environ.get("SLURM_LOCALID", "0"),
    }
    nodelist = environ.get("SLURM_STEP_NODELIST") or environ.get("SLURM_JOB_NODELIST")
    env["MASTER_ADDR"] = environ.get("MASTER_ADDR") or (first_host(nodelist) if nodelist else "127.0.0.1")
    job_id = environ.get("SLURM_JOB_ID", "")
    port = 15000 + int(job_id[-4:]) if job_id[-4:].isdigit() else 12910
    env["MASTER_PORT"] = environ.get("MASTER_PORT") or str(port)
    return env


def setup_distributed() -> None:
    """Join the process group started by ``torchrun`` or ``srun`` (NCCL on GPUs, gloo on CPUs); no-op
    otherwise (one process, or the batch script of a SLURM job)."""
    os.environ.update(torch_env_from_slurm(os.environ))
    if int(os.environ.get("WORLD_SIZE", "1")) > 1 and not dist.is_initialized():
        backend = "nccl" if torch.cuda.is_available() else "gloo"
        if backend == "nccl":
            torch.cuda.set_device(int(os.environ.get("LOCAL_RANK", "0")))
        dist.init_process_group(backend=backend)


def is_distributed() -> bool:
    """True inside an initialised process group with more than one rank."""
    return dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1


def rank_and_world() -> tuple[int, int]:
    """(global rank, world size); (0, 1) without a process group."""
    if dist.is_available() and dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    return 0, 1


def _collective_device(tensor: Tensor) -> torch.device:
    """NCCL reduces CUDA tensors only; gloo reduces CPU tensors (and CUDA ones through a copy)."""
    if dist.get_backend() == "nccl" and tensor.device.type != "cuda":
        return torch.device("cuda", torch.cuda.current_device())
    return tensor.device


def all_reduce_sum(tensors: Sequence[Tensor]) -> list[Tensor]:
    """Element-wise sums over the ranks of each tensor (new tensors on the input's device and dtype)."""
    if not is_distributed():
        return [t.clone() for t in tensors]
    out = []
    for tensor in tensors:
        work = tensor.detach().to(_collective_device(tensor), copy=True).contiguous()
        dist.all_reduce(work, op=dist.ReduceOp.SUM)
        out.append(work.to(tensor.device))
    return out


def gather_rows(rows: Tensor, indices: Tensor, num_total: int) -> Tensor:
    """Rows ``0..num_total-1`` on every rank, from each rank's ``rows`` at its global ``indices``.

    A zero buffer filled with this rank's rows and summed over the ranks (every other rank adds
    exact zeros), with a count that checks each row came from exactly one rank.
    """
    out = torch.zeros((num_total, *rows.shape[1:]), dtype=rows.dtype, device=rows.device)
    count = torch.zeros(num_total, dtype=torch.float64, device=rows.device)
    index = indices.to(rows.device, torch.long)
    out.index_copy_(0, index, rows)
    count.index_add_(0, index, torch.ones_like(count[: index.numel()]))
    out, count = all_reduce_sum([out, count])
    if not bool((count == 1).all()):
        raise RuntimeError(
            "gathered rows are missing or duplicated: some images were skipped or counted twice"
        )
    return out


def any_rank(flag: bool, device: torch.device | str = "cpu") -> bool:
    """True on every rank if ``flag`` is true on at least one rank (keeps ranks' branches in step)."""
    if not is_distributed():
        return bool(flag)
    value = torch.tensor([1.0 if flag else 0.0], device=device)
    (total,) = all_reduce_sum([value])
    return bool(total.item() > 0)


def barrier() -> None:
    if is_distributed():
        dist.barrier()


def broadcast_object(obj: object, src: int = 0) -> object:
    """Rank ``src``'s ``obj`` on every rank (e.g. an output directory chosen on rank 0)."""
    if not is_distributed():
        return obj
    box = [obj]
    dist.broadcast_object_list(box, src=src)
    return box[0]
