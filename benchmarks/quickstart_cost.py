"""The quickstart's cost and quality: ``experiment=quickstart`` against the recipe it replaced.

Runs ``ddpm-train`` twice in subprocesses, each in its own run directory:

* ``before``: the quickstart as it was (the digits upsampled to 16x16, 1200 steps of L_simple on the
  linear schedule, a ``ch_mult [1, 2, 2]`` net, EMA 0.995, its 64-image grid with all 1000 ancestral
  steps), without the digits score;
* ``after``: ``experiment=quickstart`` as it is (the digits at 8x8, cosine schedule, min-SNR-5, 1000
  steps, EMA 0.995, 50-step ancestral grid with the posterior variance, the digits score of 256 samples
  printed at the end);

and prints one JSON object with each run's wall time and CPU time (user + system of the subprocess)
and the digits score (:mod:`ddpm.digits_score`) of ``--num-samples`` EMA samples of its
final checkpoint, drawn with the sampler of that run's own grid at its own resolution (8x8 samples are
resized to 16x16 as the real digits are, see :mod:`ddpm.digits_score`), beside as many real
digits:

    python benchmarks/quickstart_cost.py                        # both runs, 1,000 samples each
    python benchmarks/quickstart_cost.py --runs after --num-samples 250
    python benchmarks/quickstart_cost.py --score CKPT --sampler ancestral --steps 100  # score one checkpoint

Scoring 1,000 samples of ``before`` takes 1000 network calls at batch 1000 (about 20 minutes on 2 cores):
``--num-samples`` trades that for a noisier Fréchet distance (compare at the same N).
The time of a run includes Python's start-up and, for ``after``, the digits classifier's training and
its score.
"""

from __future__ import annotations

import argparse
import functools
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

# each run: (experiment, overrides); "before" is the quickstart's earlier recipe (no digits score callback)
BEFORE = ["data.image_size=16", "model.attn_resolutions=[8]", "diffusion=linear",
          "diffusion.var_type=fixed_large", "module=ddpm", "sampler=ancestral", "sampler.steps=null",
          "trainer.max_steps=1200", "trainer.val_check_interval=400",
          "callbacks.model_checkpoint.every_n_train_steps=400", "~callbacks.digits_score"]  # fmt: skip
RUNS = {"before": ("quickstart", BEFORE), "after": ("quickstart", [])}


def train_run(name: str, out_dir: Path, threads: int | None) -> dict[str, Any]:
    """``ddpm-train experiment=<RUNS[name]>``: wall and CPU seconds of the subprocess."""
    experiment, overrides = RUNS[name]
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    if threads:
        env["OMP_NUM_THREADS"] = str(threads)
    cmd = ["ddpm-train", f"experiment={experiment}", *overrides, f"hydra.run.dir={out_dir}"]
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    start = time.perf_counter()
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True)
    wall = time.perf_counter() - start
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if proc.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)} failed:\n{proc.stderr[-3000:]}")
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    printed = [line for line in proc.stdout.splitlines() if line.startswith("Digits score")]
    return {
        "experiment": experiment,
        "overrides": overrides,
        "wall_s": round(wall, 1),
        "cpu_s": round(cpu, 1),
        "printed_score": printed[-1] if printed else None,
    }


def run_grid_sampler(run_dir: Path) -> tuple[Callable, dict]:
    """The sampler of a run's sample grid (``sampler`` in its ``.hydra/config.yaml``): a factory
    ``sampler(diffusion)`` and its name and settings for the report (a run is scored with its grid's
    sampler). The file is data: its ``_target_`` must be one of this project's samplers
    (:func:`ddpm.io.stored_config.instantiate_stored`)."""
    from omegaconf import OmegaConf

    from ddpm.io.stored_config import instantiate_stored

    source = run_dir / ".hydra" / "config.yaml"
    cfg = OmegaConf.to_container(OmegaConf.load(source).sampler, resolve=False)
    build = instantiate_stored(cfg, source, "sampler", fix="use a run directory written by ddpm-train")
    settings = {k: v for k, v in cfg.items() if not k.startswith("_")}
    return build, {"sampler": cfg["_target_"].rsplit(".", 1)[-1], **settings}


def score_checkpoint(ckpt: Path, make_sampler: Callable, label: dict, num_samples: int, batch: int) -> dict:
    """The digits score of ``num_samples`` EMA samples (seeds 0..N-1) of a ``ddpm-train`` checkpoint, drawn
    with ``make_sampler(diffusion)``; ``label`` (the sampler's name and settings) heads the result."""
    from ddpm.digits_score import digits_score
    from ddpm.lightning.restore import load_module
    from ddpm.sampling import sample

    module = load_module(ckpt)
    start = time.process_time()
    images = sample(module.ema_net, module.diffusion, module.ema_net.image_shape, num_samples,
                    sampler=make_sampler(module.diffusion), batch_size=batch)  # fmt: skip
    score = digits_score(images).as_dict()
    return {**label, "sampling_cpu_s": round(time.process_time() - start, 1), **score}


def real_score(num_samples: int) -> dict:
    from ddpm.digits_score import digits_score, held_out_digits

    return digits_score(held_out_digits(num_samples)).as_dict()


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    parser.add_argument("--runs", default="before,after", help="which runs (before, after)")
    parser.add_argument("--num-samples", type=int, default=1000)
    parser.add_argument("--batch", type=int, default=1000, help="images per network call when scoring")
    parser.add_argument("--threads", type=int, default=None, help="OMP_NUM_THREADS of the runs")
    parser.add_argument("--out", default=None, help="where the run directories go (default: a temp dir)")
    parser.add_argument("--score", default=None, help="only score this checkpoint")
    parser.add_argument("--sampler", default="dpm_solver_pp_2m", help="with --score: a sampler name")
    parser.add_argument("--steps", type=int, default=None, help="with --score: sampler steps")
    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    if args.score:
        from ddpm.sampling import make_sampler

        settings = {} if args.steps is None else {"steps": args.steps}
        label = {"sampler": args.sampler, **settings}
        build = functools.partial(make_sampler, args.sampler, **settings)
        result = score_checkpoint(Path(args.score), build, label, args.num_samples, args.batch)
        print(json.dumps({"checkpoint": args.score, **result}))
        return result
    out = Path(args.out or tempfile.mkdtemp(prefix="quickstart_cost_"))
    result: dict = {"benchmark": "quickstart_cost", "num_samples": args.num_samples, "threads": args.threads,
                    "python": sys.version.split()[0], "torch": torch.__version__}  # fmt: skip
    for name in args.runs.split(","):
        run = train_run(name, out / name, args.threads)
        build, label = run_grid_sampler(out / name)
        ckpt = out / name / "checkpoints" / "last.ckpt"
        run["score"] = score_checkpoint(ckpt, build, label, args.num_samples, args.batch)
        result[name] = run
        print(json.dumps({name: run}), file=sys.stderr)  # progress: each run as it finishes
    result["held_out_digits"] = real_score(args.num_samples)  # at most the 180 held-out digits
    if "before" in result and "after" in result:
        result["cpu_ratio_after_vs_before"] = round(result["after"]["cpu_s"] / result["before"]["cpu_s"], 3)
        result["wall_ratio_after_vs_before"] = round(
            result["after"]["wall_s"] / result["before"]["wall_s"], 3
        )
    print(json.dumps(result))
    return result


if __name__ == "__main__":
    main()
