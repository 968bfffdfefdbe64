"""Throughput of the evaluation on this machine, and the projected cost of the paper's protocol.

Measures (after a warm-up call, median of ``--rounds``):

* sampling: sample-steps/s of one ancestral step (U-Net forward + per-sample noise) of the paper's
  CIFAR-10 U-Net (35.7M parameters, 32x32) at batch ``--batch``;
* Inception: images/s of the TF-compatible Inception (32x32 uint8 -> 299x299, pool features +
  logits) with randomly initialised weights (same cost as the real ones; nothing is downloaded);
* the FLOPs of both, counted with ``torch.utils.flop_counter`` (a multiply-add counts 2).

and projects the wall time of the paper's protocol on this machine (50k samples x 1000 steps, the
Inception features of 50k samples + 50k train + 10k test images, NLL on the 10k test images x 1000
steps) and its hours per TFLOP/s of sustained accelerator throughput. Prints one JSON object:

    python benchmarks/eval_throughput.py --batch 8 --inception-batch 8 --rounds 3 --threads 1,2
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import tempfile
import time
from pathlib import Path

import torch
from torch.utils.flop_counter import FlopCounterMode

from ddpm.diffusion import GaussianDiffusion
from ddpm.metrics.inception import InceptionFeatureExtractor, make_random_inception_weights
from ddpm.models import UNet
from ddpm.sampling import AncestralSampler, PerSampleNoise
from ddpm.weights.presets import PRESETS

PAPER = {"num_samples": 50_000, "steps": 1000, "reference_images": 60_000, "nll_images": 10_000}


def timed(fn, rounds: int) -> float:
    """Median seconds of ``fn()`` over ``rounds`` calls after one warm-up call."""
    fn()
    times = []
    for _ in range(rounds):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def flops(fn) -> int:
    counter = FlopCounterMode(display=False)
    with counter:
        fn()
    return int(counter.get_total_flops())


@torch.no_grad()
def sampler_step(batch: int, rounds: int) -> dict[str, float]:
    net = UNet(**PRESETS["cifar10"].unet, dropout=0.1).eval()
    sampler = AncestralSampler(GaussianDiffusion())
    noise = PerSampleNoise(range(batch))
    x = torch.randn(batch, 3, 32, 32)
    seconds = timed(lambda: sampler.p_sample(net, x, 500, noise), rounds)
    per_sample = flops(lambda: net(x[:1], torch.tensor([500])))
    return {
        "batch": batch,
        "seconds_per_step": seconds,
        "sample_steps_per_s": batch / seconds,
        "flops_per_sample_step": per_sample,
        "achieved_gflops": batch * per_sample / seconds / 1e9,
    }


@torch.no_grad()
def inception(batch: int, rounds: int, weights: Path) -> dict[str, float]:
    extractor = InceptionFeatureExtractor(weights)
    images = torch.randint(0, 256, (batch, 3, 32, 32), dtype=torch.uint8)
    seconds = timed(lambda: extractor(images), rounds)
    per_image = flops(lambda: extractor(images[:1]))
    return {
        "batch": batch,
        "seconds_per_batch": seconds,
        "images_per_s": batch / seconds,
        "flops_per_image": per_image,
        "achieved_gflops": batch * per_image / seconds / 1e9,
    }


def projections(sampling: dict, features: dict) -> dict[str, float]:
    sample_steps = PAPER["num_samples"] * PAPER["steps"]
    nll_steps = PAPER["nll_images"] * PAPER["steps"]
    inception_images = PAPER["num_samples"] + PAPER["reference_images"]
    gen_s = sample_steps / sampling["sample_steps_per_s"]
    inc_s = inception_images / features["images_per_s"]
    nll_s = nll_steps / sampling["sample_steps_per_s"]  # one forward per image and step, as sampling
    gen_flops = sample_steps * sampling["flops_per_sample_step"]
    inc_flops = inception_images * features["flops_per_image"]
    nll_flops = nll_steps * sampling["flops_per_sample_step"]
    return {
        "sampling_50k_x_1000_hours": gen_s / 3600,
        "inception_110k_images_hours": inc_s / 3600,
        "fid_is_protocol_hours": (gen_s + inc_s) / 3600,
        "fid_is_protocol_days": (gen_s + inc_s) / 86400,
        "nll_10k_test_x_1000_hours": nll_s / 3600,
        "sampling_pflop": gen_flops / 1e15,
        "inception_pflop": inc_flops / 1e15,
        "nll_pflop": nll_flops / 1e15,
        "fid_is_hours_per_tflops": (gen_flops + inc_flops) / 1e12 / 3600,
        "nll_hours_per_tflops": nll_flops / 1e12 / 3600,
    }


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--batch", type=int, default=8, help="sampling batch size")
    parser.add_argument("--inception-batch", type=int, default=8)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--threads", default="1,2", help="comma-separated intra-op thread counts to try")
    args = parser.parse_args()

    results = []
    with tempfile.TemporaryDirectory() as tmp:
        weights = make_random_inception_weights(Path(tmp) / "random_inception.pth")
        for threads in [int(t) for t in args.threads.split(",")]:
            torch.set_num_threads(threads)
            results.append(
                {
                    "threads": threads,
                    "sampling": sampler_step(args.batch, args.rounds),
                    "inception": inception(args.inception_batch, args.rounds, weights),
                }
            )
    best_sampling = max((r["sampling"] for r in results), key=lambda r: r["sample_steps_per_s"])
    best_inception = max((r["inception"] for r in results), key=lambda r: r["images_per_s"])
    report = {
        "machine": {
            "cpu_count": os.cpu_count(),
            "load_average_1min": os.getloadavg()[0],
            "torch": torch.__version__,
            "platform": platform.platform(),
            "device": "cpu",
        },
        "protocol": PAPER,
        "runs": results,
        "best": {"sampling": best_sampling, "inception": best_inception},
        "projection_this_machine_and_per_tflops": projections(best_sampling, best_inception),
    }
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
