"""``ddpm-eval``: FID / IS / NLL of a checkpoint or of the released DDPM weights, by the paper's protocol.

    ddpm-eval checkpoint=logs/ddpm_cifar10/runs/<run>/checkpoints/last.ckpt          # ours (EMA weights)
    ddpm-eval checkpoint=/models/ddpm-cifar10-32 pretrained=cifar10 data=cifar10      # diffusers folder
    ddpm-eval checkpoint=/models/ema_diffusion_cifar10_model/model-790000.ckpt pretrained=cifar10 data=cifar10
    ddpm-eval ... metrics.nll.enabled=true                 # + bits/dim on the test set
    ddpm-eval ... hydra.run.dir=<dir of an interrupted run>                           # resume
    torchrun --nproc_per_node=8 -m ddpm.cli.ddpm_eval ... hydra.run.dir=<dir>                  # 8 GPUs
    ddpm-eval mode=check_inception data=cifar10    # real-data IS / train-vs-test FID: 11.24 / 3.15?

Default protocol: 50,000 samples, every one of the T=1000 ancestral steps, EMA weights; FID against
the training and the test set; IS with 10 splits and with 1 split. Writes ``report.json`` (metrics and
protocol only, so a resumed run writes the same file), ``run_info.json`` (timings, cache hits),
``samples.png`` and ``samples/samples_XXXXX.npz`` (uint8 [n, H, W, C]).
"""

from __future__ import annotations

import logging
import os
import sys
import time
from pathlib import Path
from typing import Any

import hydra
import torch
import torch.distributed as dist
from omegaconf import DictConfig, OmegaConf

from ddpm.diffusion.gaussian import GaussianDiffusion
from ddpm.errors import ConfigError, DDPMError
from ddpm.evaluation.checkpoint import load_model
from ddpm.evaluation.distributed import barrier, broadcast_object, rank_and_world
from ddpm.evaluation.generation import (
    ShardStore,
    describe_sampler,
    generate_shards,
    generation_fingerprint,
    module_digest,
)
from ddpm.evaluation.inception import InceptionFeatureExtractor, load_inception, resolve_inception_weights
from ddpm.evaluation.metrics import accumulate, count_label, fid, statistics_for
from ddpm.evaluation.nll import dataset_nll_resumable
from ddpm.evaluation.pretrained import LoadedModel, get_preset
from ddpm.evaluation.reference_stats import describe_datamodule, reference_statistics, split_dataset
from ddpm.evaluation.report import (
    CHECK_TOLERANCE,
    EXPECTED,
    INCEPTION_CHECK,
    dataset_family,
    summary_lines,
    write_json,
)
from ddpm.utils.config import config_dir
from ddpm.utils.images import save_image_grid

log = logging.getLogger("ddpm.eval")


# ----------------------------------------------------------------------------- setup
def setup_distributed() -> None:
    """Join the process group started by ``torchrun`` (NCCL on GPUs, gloo on CPUs); no-op otherwise."""
    if int(os.environ.get("WORLD_SIZE", "1")) > 1 and not dist.is_initialized():
        backend = "nccl" if torch.cuda.is_available() else "gloo"
        if backend == "nccl":
            torch.cuda.set_device(int(os.environ.get("LOCAL_RANK", "0")))
        dist.init_process_group(backend=backend)


def resolve_device(name: str) -> torch.device:
    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "cpu"
    if name == "cuda":
        if not torch.cuda.is_available():
            raise ConfigError("device=cuda but no GPU is visible: use device=cpu or device=auto")
        return torch.device("cuda", int(os.environ.get("LOCAL_RANK", "0")))
    return torch.device(name)


def build_datamodule(cfg: DictConfig, loaded: LoadedModel | None) -> Any:
    """The data config given on the command line, else the one stored in our checkpoint."""
    if cfg.get("data") is not None:
        return hydra.utils.instantiate(cfg.data)
    if loaded is not None and loaded.config and loaded.config.get("data"):
        return hydra.utils.instantiate(OmegaConf.create(loaded.config["data"]))
    preset = get_preset(cfg.get("pretrained"))
    hint = (
        f"data={preset.data}"
        if preset is not None
        else "data=cifar10 (or the dataset the model was trained on)"
    )
    raise ConfigError(f"no dataset for the reference statistics: add {hint} to the command line")


def with_var_type(diffusion: GaussianDiffusion, var_type: str | None) -> GaussianDiffusion:
    if not var_type or var_type == diffusion.var_type:
        return diffusion
    return GaussianDiffusion(mean_type=diffusion.mean_type, var_type=var_type, betas=diffusion.betas.cpu())  # type: ignore[arg-type]


def output_directory(cfg: DictConfig) -> Path:
    """Rank 0's output directory on every rank (each rank's Hydra may have picked its own timestamp)."""
    path = str(Path(cfg.output_dir).resolve())
    return Path(str(broadcast_object(path)))


# ----------------------------------------------------------------------------- metrics
def _reference(cfg: DictConfig, datamodule: Any, extractor: Any, device: torch.device, split: str):
    m = cfg.metrics
    return reference_statistics(
        split_dataset(datamodule, split),
        describe_datamodule(datamodule),
        split,
        extractor,
        m.cache_dir,
        num_images=m.get("num_reference_images"),
        batch_size=m.batch_size,
        device=device,
        is_splits=tuple(m.is_splits),
        shuffle_seed=m.is_shuffle_seed,
        num_workers=m.num_workers,
        progress=cfg.progress,
    )


def check_inception(cfg: DictConfig, device: torch.device, out_dir: Path) -> dict[str, Any]:
    """Real-data IS (train, test) and train-vs-test FID, against the known values of a correct setup."""
    datamodule = build_datamodule(cfg, None)
    extractor = load_inception(cfg.metrics.inception_weights, device, cfg.metrics.allow_download)
    train, train_key, _ = _reference(cfg, datamodule, extractor, device, "train")
    test, _, _ = _reference(cfg, datamodule, extractor, device, "test")
    metrics: dict[str, float] = {}
    for name, stats in (("train", train), ("test", test)):
        for splits in stats.is_splits:  # (split counts above the number of images are left out)
            metrics[f"is_{name}_{splits}split{'s' if splits > 1 else ''}"] = stats.inception_score(splits)[0]
    metrics["fid_train_vs_test"] = fid(train.features, test.features)
    family = dataset_family(train_key.dataset)
    expected = INCEPTION_CHECK.get(family or "", {})
    full = family == "cifar10" and train.num == 50000 and test.num == 10000
    verdict = {}
    if full and extractor.official:
        verdict = {k: abs(metrics[k] - v) <= CHECK_TOLERANCE[k] for k, v in expected.items() if k in metrics}
    report = {
        "mode": "check_inception",
        "dataset": train_key.dataset,
        "num_images": {"train": train.num, "test": test.num},
        "inception": {"sha256": extractor.weights_sha256, "official": extractor.official},
        "metrics": metrics,
        "expected": expected,
        "passed": verdict or None,
    }
    if rank_and_world()[0] == 0:
        write_json(out_dir / "inception_check.json", report)
        print("\n".join(["Inception check:", *summary_lines(metrics, expected)]))
        if not extractor.official:
            print("WARNING: these are not the official Inception weights; the values cannot match.")
        elif not full:
            print("(the reference values hold for the full CIFAR-10 train (50k) and test (10k) sets)")
        elif not all(verdict.values()):
            print(
                "MISMATCH: your Inception setup does not reproduce the reference values; do not trust FID/IS."
            )
        else:
            print("OK: the Inception setup reproduces the reference values.")
    return report


def evaluate(cfg: DictConfig) -> dict[str, Any]:
    """Generate (or resume) the samples, compute the metrics, write the report; returns the report."""
    setup_distributed()
    rank, world = rank_and_world()
    device = resolve_device(cfg.device)
    if device.type == "cuda" and cfg.get("float32_matmul_precision"):
        torch.set_float32_matmul_precision(cfg.float32_matmul_precision)
    out_dir = output_directory(cfg)
    if cfg.mode == "check_inception":
        return check_inception(cfg, device, out_dir)
    if cfg.mode != "evaluate":
        raise ConfigError(f"unknown mode {cfg.mode!r}: choose evaluate or check_inception")
    if not cfg.get("checkpoint"):
        raise ConfigError(
            "no model to evaluate: pass checkpoint=/path/to/last.ckpt (or a released-weights folder/file)"
        )
    gen, m = cfg.generation, cfg.metrics
    timings: dict[str, float] = {}
    started = time.perf_counter()

    # Fail before hours of sampling, not after: find the Inception weights and the dataset first.
    inception_path = None
    if m.fid or m.inception_score:
        inception_path = resolve_inception_weights(m.inception_weights, m.allow_download)
    loaded = load_model(cfg.checkpoint, cfg.get("pretrained"), cfg.use_ema, cfg.get("var_type"))
    datamodule = build_datamodule(cfg, loaded) if (m.fid or m.nll.enabled) else None
    needed = (list(m.reference_splits) if m.fid else []) + ([m.nll.split] if m.nll.enabled else [])
    for split in dict.fromkeys(needed):
        split_dataset(datamodule, split)  # a missing dataset is reported now (and downloaded once)
    diffusion = with_var_type(loaded.diffusion, cfg.get("var_type")).to(device)
    net = loaded.net.to(device).eval()
    sampler = hydra.utils.instantiate(cfg.sampler)(diffusion)
    sampler_info = describe_sampler(sampler)
    fingerprint = generation_fingerprint(
        weights=module_digest(net),
        sampler=sampler_info,
        image_shape=list(loaded.image_shape),
        seed=int(cfg.seed),
        num_samples=int(gen.num_samples),
        shard_size=int(gen.shard_size),
        device_type=device.type,
    )
    store = ShardStore(out_dir / "samples", fingerprint, gen.num_samples, gen.shard_size)
    t0 = time.perf_counter()
    my_shards = generate_shards(
        net, sampler, store, loaded.image_shape, cfg.seed, gen.batch_size, device, cfg.progress
    )
    barrier()
    timings["generation_s"] = time.perf_counter() - t0
    if rank == 0 and gen.grid_size:
        grid_images = []
        for _, images in store.iter_shards(range(store.num_shards)):
            grid_images.append(images)
            if sum(len(g) for g in grid_images) >= gen.grid_size:
                break
        grid = torch.cat(grid_images)[: gen.grid_size].float() / 127.5 - 1.0
        save_image_grid(grid, out_dir / "samples.png")

    n_label = count_label(int(gen.num_samples))
    metrics: dict[str, Any] = {}
    references: dict[str, Any] = {}
    cache_hits: dict[str, bool] = {}
    inception_info = None
    if m.fid or m.inception_score:
        t0 = time.perf_counter()
        extractor = InceptionFeatureExtractor(inception_path).to(device)
        inception_info = {"sha256": extractor.weights_sha256, "official": extractor.official}
        stats = statistics_for(extractor, gen.num_samples, tuple(m.is_splits), m.is_shuffle_seed, device)
        accumulate(stats, extractor, store.iter_shards(my_shards), m.batch_size, device)
        stats = stats.reduced()
        stats.check_complete()
        timings["sample_features_s"] = time.perf_counter() - t0
        if m.inception_score:
            for splits in stats.is_splits:
                mean, std = stats.inception_score(splits)
                suffix = f"{splits}splits" if splits > 1 else "1split"
                metrics[f"is_{n_label}_{suffix}"] = mean
                if splits > 1:
                    metrics[f"is_{n_label}_{suffix}_std"] = std
        if m.fid:
            for split in m.reference_splits:
                t0 = time.perf_counter()
                ref, key, hit = _reference(cfg, datamodule, extractor, device, split)
                timings[f"reference_{split}_s"] = time.perf_counter() - t0
                metrics[f"fid_{n_label}_{split}"] = fid(stats.features, ref.features)
                references[split] = {
                    "dataset": key.dataset,
                    "num_images": key.num_images,
                    "key": key.digest(),
                }
                cache_hits[split] = hit

    nll_report = None
    if m.nll.enabled:
        t0 = time.perf_counter()
        dataset = split_dataset(datamodule, m.nll.split)
        nll_fingerprint = generation_fingerprint(
            weights=module_digest(net),
            diffusion=sampler_info.get("diffusion") or str(diffusion),
            split=m.nll.split,
            dataset=describe_datamodule(datamodule),
            num_images=m.nll.num_images,
            seed=int(cfg.seed),
            clip=bool(m.nll.clip_denoised),
            device_type=device.type,
        )
        nll_stats = dataset_nll_resumable(
            net,
            diffusion,
            dataset,
            out_dir / "nll",
            nll_fingerprint,
            m.nll.num_images,
            m.nll.shard_size,
            m.nll.batch_size,
            cfg.seed,
            device,
            m.nll.clip_denoised,
            m.num_workers,
            cfg.progress,
        )
        nll_report = nll_stats.summary()
        metrics[f"nll_bpd_{m.nll.split}"] = nll_report["bpd"]
        timings["nll_s"] = time.perf_counter() - t0

    family = dataset_family(describe_datamodule(datamodule)) if datamodule is not None else None
    preset = get_preset(cfg.get("pretrained"))
    expected = dict(preset.expected) if preset is not None else EXPECTED.get(family or "", {})
    report = {
        "metrics": metrics,
        "expected": expected,
        "protocol": {
            "checkpoint": str(cfg.checkpoint),
            "kind": loaded.kind,
            "weights": loaded.weights,
            "pretrained": cfg.get("pretrained"),
            "notes": loaded.notes,
            "num_samples": int(gen.num_samples),
            "seed": int(cfg.seed),
            "image_shape": list(loaded.image_shape),
            "sampler": sampler_info,
            "var_type": diffusion.var_type,
            "fingerprint": fingerprint,
            "inception": inception_info,
            "is_splits": list(m.is_splits),
            "is_shuffle_seed": m.is_shuffle_seed,
            "references": references,
            "device_type": device.type,
        },
        "nll": nll_report,
    }
    timings["total_s"] = time.perf_counter() - started
    if rank == 0:
        write_json(out_dir / "report.json", report)
        write_json(
            out_dir / "run_info.json",
            {
                "output_dir": str(out_dir),
                "world_size": world,
                "timings": timings,
                "reference_cache_hits": cache_hits,
            },
        )
        print(
            "\n".join(
                [
                    f"Evaluation of {cfg.checkpoint} ({loaded.weights} weights):",
                    *summary_lines(metrics, expected),
                ]
            )
        )
        print(f"Report: {out_dir / 'report.json'}")
    barrier()
    return report


@hydra.main(version_base="1.3", config_path=str(config_dir()), config_name="eval")
def main(cfg: DictConfig) -> float | None:
    try:
        report = evaluate(cfg)
    except DDPMError as exc:
        print(f"error: {exc}", file=sys.stderr)
        sys.exit(2)
    finally:
        if dist.is_initialized():
            dist.destroy_process_group()
    metrics = report.get("metrics", {})
    return next((v for k, v in metrics.items() if k.startswith("fid_") and k.endswith("_train")), None)


if __name__ == "__main__":
    main()
