"""The GPU benchmark: training, sampling and Inception throughput of the paper's CIFAR-10 setup, one JSON.

Sections (each timed after warm-up, with ``torch.cuda.synchronize``, peak memory per row):

* ``train``: images/s of one training step of the paper's 35.7M CIFAR-10 U-Net at batch 128 (L_simple,
  backward, grad-norm clip 1, Adam (fused on CUDA), sync-free EMA: the LightningModule's own pieces)
  in strict fp32, TF32 and bf16-mixed (+ channels-last), each eager and ``torch.compile``d; the
  projected hours of 800k steps; host syncs per step counted by ``torch.cuda.set_sync_debug_mode``.
* ``sampling``: network calls/s of the EMA U-Net (no grad, TF32 policy ``high``) at batch 256 and 1000,
  eager and compiled (``reduce-overhead`` = CUDA graphs), and the projected hours of the paper's
  50,000 samples x 1000 steps.
* ``inception``: images/s of the TF-compatible Inception (strict fp32, batch 200) on 32x32 uint8 images.
* ``fid_drift``: FID between the Inception statistics of the same 10k images computed in strict fp32
  and in TF32 (``high``), and the largest feature difference. The images are uniform random uint8
  and the Inception weights random (Kaiming; the official file cannot be fetched offline): the drift
  of the official weights on real images is of the same order, but not the same number.

A time budget (``--budget-s``, 450 s by default) skips the remaining rows, saying so, so the whole
suite stays within 8 minutes on an H100-class GPU. ``--smoke`` runs every code path on the CPU at tiny
sizes in seconds (tests/benchmarks/test_gpu_suite.py), so the GPU run cannot fail on a typo:

    python benchmarks/gpu_suite.py > gpu_suite.json           # on the GPU machine
    python benchmarks/gpu_suite.py --smoke                    # anywhere, seconds
"""

from __future__ import annotations

import argparse
import contextlib
import functools
import json
import platform
import tempfile
import time
import warnings
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

import hydra
import torch
from omegaconf import OmegaConf
from torch import nn

from ddpm.diffusion import GaussianDiffusion
from ddpm.lightning import DDPMLitModule
from ddpm.metrics.inception import InceptionFeatureExtractor, as_uint8_rgb, make_random_inception_weights
from ddpm.metrics.statistics import FeatureStatistics, fid
from ddpm.utils.compile import compile_for_sampling
from ddpm.utils.config import config_dir
from ddpm.utils.precision import set_tf32_policy, strict_fp32

TRAIN_STEPS_PAPER = 800_000
SAMPLES_PAPER, STEPS_PAPER = 50_000, 1000


@dataclass
class Settings:
    device: torch.device
    model: str = "unet_cifar10"
    model_overrides: dict = field(default_factory=dict)
    batch: int = 128
    warmup: int = 5
    steps: int = 20
    sample_batches: tuple[int, ...] = (256, 1000)
    sample_calls: int = 10
    inception_batch: int = 200
    inception_batches: int = 10
    drift_images: int = 10_000
    compile_backend: str = "inductor"
    compiled_precisions: tuple[str, ...] = ("fp32", "tf32", "bf16")
    budget_s: float = 450.0


# every code path once, on the CPU, in seconds: compiled rows with dynamo's eager backend, bf16 only
SMOKE = {
    "model": "unet_tiny", "model_overrides": {"ch_mult": [1], "resolution": 8},
    "batch": 2, "warmup": 1, "steps": 1, "sample_batches": (2,), "sample_calls": 1,
    "inception_batch": 2, "inception_batches": 1, "drift_images": 2, "compile_backend": "eager",
    "compiled_precisions": ("bf16",),
}  # fmt: skip


class Clock:
    """Wall time since the start, against the budget."""

    def __init__(self, budget_s: float) -> None:
        self.start, self.budget_s = time.perf_counter(), budget_s

    def left(self) -> float:
        return self.budget_s - (time.perf_counter() - self.start)


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


@contextlib.contextmanager
def peak_memory(device: torch.device, row: dict) -> Iterator[None]:
    """Records the peak allocated GPU memory of the block in ``row['peak_memory_gib']`` (None on CPU)."""
    if device.type == "cuda":
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats(device)
    yield
    row["peak_memory_gib"] = (
        round(torch.cuda.max_memory_allocated(device) / 2**30, 3) if device.type == "cuda" else None
    )


def build_unet(s: Settings) -> nn.Module:
    config = OmegaConf.merge(OmegaConf.load(config_dir() / "model" / f"{s.model}.yaml"), s.model_overrides)
    return hydra.utils.instantiate(config)


def precision_setup(precision: str) -> tuple[str, bool]:
    """(float32_matmul_precision, autocast bf16) of a row: fp32 = strict, tf32 = high, bf16 = bf16-mixed."""
    return {"fp32": ("highest", False), "tf32": ("high", False), "bf16": ("high", True)}[precision]


def train_module(s: Settings, precision: str, compiled: bool) -> DDPMLitModule:
    """The paper's module (Adam 2e-4, fused auto, EMA 0.9999) on the device; bf16 rows use channels-last."""
    adam = functools.partial(torch.optim.Adam, lr=2e-4, fused=None)
    net = build_unet(s)
    module = DDPMLitModule(net, GaussianDiffusion(), optimizer=adam, channels_last=precision == "bf16")
    module = module.to(s.device)
    if compiled:  # what DDPMLitModule(compile=True) does, with the backend of the settings
        module.net.compile(backend=s.compile_backend)
    return module


def make_train_step(s: Settings, module: DDPMLitModule, autocast: bool) -> Callable[[torch.Tensor], None]:
    """One step as Lightning runs it: autocast around the loss only, backward, clip, Adam, EMA."""
    optimizer = module.configure_optimizers()["optimizer"]
    generator = torch.Generator(device=s.device).manual_seed(0)
    params = list(module.net.parameters())

    def step(x0: torch.Tensor) -> None:
        with torch.autocast(s.device.type, dtype=torch.bfloat16, enabled=autocast):
            loss = module._loss(module.net, x0, {}, generator)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        module.ema.update_parameters(module.net)

    return step


def count_syncs(s: Settings, step: Callable[[torch.Tensor], None], x0: torch.Tensor) -> int | None:
    """Host-device synchronisations in 3 steps (torch.cuda.set_sync_debug_mode); None on the CPU."""
    if s.device.type != "cuda":
        return None
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        torch.cuda.set_sync_debug_mode("warn")
        try:
            for _ in range(3):
                step(x0)
        finally:
            torch.cuda.set_sync_debug_mode("default")
    return sum("synchroniz" in str(w.message) for w in caught)


def train_row(s: Settings, precision: str, compiled: bool) -> dict:
    matmul, autocast = precision_setup(precision)
    set_tf32_policy(matmul)
    torch._dynamo.reset()
    row: dict = {"precision": precision, "compiled": compiled, "float32_matmul_precision": matmul}
    with peak_memory(s.device, row):
        module = train_module(s, precision, compiled)
        step = make_train_step(s, module, autocast)
        x0 = torch.rand(s.batch, *image_shape(module.net), device=s.device) * 2 - 1
        start = time.perf_counter()
        for _ in range(s.warmup):
            step(x0)
        sync(s.device)
        row["warmup_s"] = round(time.perf_counter() - start, 2)
        start = time.perf_counter()
        for _ in range(s.steps):
            step(x0)
        sync(s.device)
        seconds = (time.perf_counter() - start) / s.steps
        row["host_syncs_per_3_steps"] = count_syncs(s, step, x0)
    row["images_per_s"] = round(s.batch / seconds, 2)
    row["hours_800k_steps"] = round(TRAIN_STEPS_PAPER * seconds / 3600, 2)
    return row


def image_shape(net: nn.Module) -> tuple[int, int, int]:
    return (net.in_channels, net.resolution, net.resolution)


def sampling_row(s: Settings, net: nn.Module, batch: int, compiled: bool) -> dict:
    """Network calls/s of the no-grad forward at ``batch`` (t varies per call as in a sampler)."""
    torch._dynamo.reset()
    model = compile_for_sampling(net, None if s.device.type == "cuda" else "default") if compiled else net
    if compiled and s.compile_backend != "inductor":
        model._forward = torch.compile(net.forward, backend=s.compile_backend, dynamic=False)
    row: dict = {"batch": batch, "compiled": compiled, "mode": getattr(model, "mode", "eager")}
    x = torch.randn(batch, *image_shape(net), device=s.device)
    with peak_memory(s.device, row), torch.no_grad():
        start = time.perf_counter()
        for k in range(3):
            model(x, torch.full((batch,), 999 - k, device=s.device, dtype=torch.long))
        sync(s.device)
        row["warmup_s"] = round(time.perf_counter() - start, 2)
        start = time.perf_counter()
        for k in range(s.sample_calls):
            model(x, torch.full((batch,), 999 - k, device=s.device, dtype=torch.long))
        sync(s.device)
        seconds = (time.perf_counter() - start) / s.sample_calls
    row["calls_per_s"] = round(1 / seconds, 3)
    row["image_calls_per_s"] = round(batch / seconds, 1)
    row["hours_50k_x_1000"] = round(SAMPLES_PAPER * STEPS_PAPER * seconds / batch / 3600, 3)
    return row


def inception_extractor(s: Settings) -> InceptionFeatureExtractor:
    """The Inception with random weights (no download; the same compute as the official ones)."""
    path = make_random_inception_weights(tempfile.mkdtemp() + "/random_inception.pth")
    return InceptionFeatureExtractor(path).to(s.device)


def inception_row(s: Settings, extractor: InceptionFeatureExtractor) -> dict:
    images = torch.randint(0, 256, (s.inception_batch, 3, 32, 32), dtype=torch.uint8, device=s.device)
    row: dict = {"batch": s.inception_batch, "precision": "strict fp32"}
    with peak_memory(s.device, row):
        extractor(images)
        sync(s.device)
        start = time.perf_counter()
        for _ in range(s.inception_batches):
            extractor(images)
        sync(s.device)
        seconds = (time.perf_counter() - start) / s.inception_batches
    row["images_per_s"] = round(s.inception_batch / seconds, 1)
    return row


def fid_drift_row(s: Settings, extractor: InceptionFeatureExtractor) -> dict:
    """FID(strict fp32 statistics, TF32 statistics) of the same random uint8 images."""
    stats = {"fp32": FeatureStatistics(), "tf32": FeatureStatistics()}
    max_diff = 0.0
    generator = torch.Generator().manual_seed(0)
    for start in range(0, s.drift_images, s.inception_batch):
        n = min(s.inception_batch, s.drift_images - start)
        images = torch.randint(0, 256, (n, 3, 32, 32), dtype=torch.uint8, generator=generator).to(s.device)
        with torch.no_grad(), strict_fp32():
            exact = extractor.net(as_uint8_rgb(images))[0]
        set_tf32_policy("high")
        with torch.no_grad():
            fast = extractor.net(as_uint8_rgb(images))[0]
        stats["fp32"].update(exact)
        stats["tf32"].update(fast)
        max_diff = max(max_diff, (exact - fast).abs().max().item())
    return {
        "images": s.drift_images, "images_kind": "uniform random uint8 32x32", "weights": "random (Kaiming)",
        "fid_tf32_vs_fp32": fid(stats["tf32"], stats["fp32"]), "max_abs_feature_diff": max_diff,
    }  # fmt: skip


def guarded(clock: Clock, needed_s: float, rows: list, make: Callable[[], dict], label: dict) -> None:
    """Run one row if the budget has ``needed_s`` left, else record it as skipped."""
    if clock.left() < needed_s:
        rows.append({**label, "skipped": f"time budget ({clock.left():.0f} s left < {needed_s:.0f} s)"})
        return
    rows.append(make())


def run_train(s: Settings, clock: Clock) -> list[dict]:
    rows: list[dict] = []
    for compiled in (False, True):
        for precision in s.compiled_precisions if compiled else ("fp32", "tf32", "bf16"):
            need = 120.0 if compiled and s.device.type == "cuda" else 10.0
            label = {"precision": precision, "compiled": compiled}
            guarded(clock, need, rows, lambda p=precision, c=compiled: train_row(s, p, c), label)
    return rows


def run_sampling(s: Settings, clock: Clock) -> list[dict]:
    set_tf32_policy("high")
    net = build_unet(s).to(s.device).eval()
    rows: list[dict] = []
    for compiled in (False, True):
        for batch in s.sample_batches:
            need = 90.0 if compiled and s.device.type == "cuda" else 5.0
            label = {"batch": batch, "compiled": compiled}
            guarded(clock, need, rows, lambda b=batch, c=compiled: sampling_row(s, net, b, c), label)
    return rows


def summary(train: list[dict], sampling: list[dict]) -> dict:
    """The issue's targets: bf16+compile >= 2x fp32 eager, 800k steps <= 4 h, 50k x 1000 <= 1 h."""
    by = {(r["precision"], r["compiled"]): r for r in train if "images_per_s" in r}
    out: dict = {}
    if ("fp32", False) in by and ("bf16", True) in by:
        out["train_speedup_bf16_compiled_vs_fp32_eager"] = round(
            by[("bf16", True)]["images_per_s"] / by[("fp32", False)]["images_per_s"], 3
        )
    done = [r for r in train if "hours_800k_steps" in r]
    if done:
        out["best_hours_800k_steps"] = min(r["hours_800k_steps"] for r in done)
    sampled = [r for r in sampling if "hours_50k_x_1000" in r]
    if sampled:
        out["best_hours_50k_x_1000"] = min(r["hours_50k_x_1000"] for r in sampled)
    return out


def environment(s: Settings) -> dict:
    env = {"torch": torch.__version__, "python": platform.python_version(), "device": str(s.device)}
    if s.device.type == "cuda":
        env["gpu"] = torch.cuda.get_device_name(s.device)
        env["cuda"], env["cudnn"] = torch.version.cuda, torch.backends.cudnn.version()
    return env


def run(s: Settings) -> dict:
    clock = Clock(s.budget_s)
    result: dict = {"benchmark": "gpu_suite", "environment": environment(s), "settings": {
        "model": s.model, "batch": s.batch, "warmup_steps": s.warmup, "timed_steps": s.steps,
        "compile_backend": s.compile_backend, "budget_s": s.budget_s}}  # fmt: skip
    result["train"] = run_train(s, clock)
    result["sampling"] = run_sampling(s, clock)
    extractor = inception_extractor(s)
    result["inception"] = inception_row(s, extractor)
    drift_fits = clock.left() > 30 or s.device.type != "cuda"
    result["fid_drift"] = fid_drift_row(s, extractor) if drift_fits else {"skipped": "time budget"}
    result["summary"] = summary(result["train"], result["sampling"])
    result["total_s"] = round(s.budget_s - clock.left(), 1)
    return result


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    parser.add_argument(
        "--smoke", action="store_true", help="tiny sizes on the CPU: every code path, seconds"
    )
    parser.add_argument("--budget-s", type=float, default=450.0, help="skip rows beyond this wall time")
    parser.add_argument("--device", default=None, help="default: cuda if available (cpu with --smoke)")
    args = parser.parse_args(argv)
    device = torch.device(args.device or ("cpu" if args.smoke or not torch.cuda.is_available() else "cuda"))
    settings = Settings(device=device, budget_s=args.budget_s, **(SMOKE if args.smoke else {}))
    torch.manual_seed(0)
    print(json.dumps(run(settings), indent=1))


if __name__ == "__main__":
    main()
