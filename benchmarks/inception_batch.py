"""Inception images/s at several batch sizes on this machine: the basis of the device-dependent default.

Measures the TF-compatible Inception (32x32 uint8 -> 299x299, pool features + logits, random weights:
the same cost as the real ones, nothing downloaded) after a warm-up call, median of ``--rounds``, and
prints one JSON object with images/s per batch size and each one's ratio to the largest batch:

    python benchmarks/inception_batch.py --batches 8,32,200 --threads 2 --rounds 2
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
from pathlib import Path

import torch
from eval_throughput import inception  # this folder's shared timing helper

from ddpm.metrics.inception import make_random_inception_weights


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--batches", default="8,32,200", help="comma-separated Inception batch sizes")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--rounds", type=int, default=2)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    batches = [int(b) for b in args.batches.split(",")]
    with tempfile.TemporaryDirectory() as tmp:
        weights = make_random_inception_weights(Path(tmp) / "random_inception.pth")
        runs = [inception(batch, args.rounds, weights) for batch in batches]
    largest = runs[-1]["images_per_s"]
    for run in runs:
        run["ratio_to_largest_batch"] = run["images_per_s"] / largest
    machine = {"cpu_count": os.cpu_count(), "threads": args.threads, "load_average_1min": os.getloadavg()[0]}
    print(json.dumps({"machine": machine, "device": "cpu", "runs": runs}, indent=2))


if __name__ == "__main__":
    main()
