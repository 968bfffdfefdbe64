"""``ddpm-eval``: FID / IS / NLL of a checkpoint or of the released DDPM weights, by the paper's protocol.

    ddpm-eval ckpt_path=logs/ddpm_cifar10/runs/<run>/checkpoints/last.ckpt          # ours (EMA weights)
    ddpm-eval ckpt_path=/models/ddpm-cifar10-32 pretrained=cifar10 data=cifar10      # diffusers folder
    ddpm-eval ckpt_path=/models/ema_diffusion_cifar10_model/model-790000.ckpt pretrained=cifar10 data=cifar10
    ddpm-eval ... metrics.nll.enabled=true                 # + bits/dim on the test set
    ddpm-eval ... metrics.kid=true metrics.precision_recall=true   # + KID, precision/recall (same pass)
    ddpm-eval ... num_draws=3          # seeds 0.., 50000.., 100000..: mean +- std over 3 draws
    ddpm-eval ckpt_path=<class-conditional run> guidance_scale=1   # labels i % num_classes, guided
    ddpm-eval ... hydra.run.dir=<dir of an interrupted run>                           # resume
    torchrun --nproc_per_node=8 -m ddpm.cli.ddpm_eval ... hydra.run.dir=<dir>                  # 8 GPUs
    ddpm-eval mode=check_inception data=cifar10    # real-data IS / train-vs-test FID: 11.24 / 3.15?

Default protocol: 50,000 samples, every one of the T=1000 ancestral steps, EMA weights; FID against
the training and the test set; IS with 10 splits and with 1 split. Writes ``report.json`` (metrics and
protocol only, so a resumed run writes the same file), ``run_info.json`` (timings, cache hits),
``samples.png``, ``samples/samples_XXXXX.npz`` (uint8 [n, H, W, C]) and ``features/features_XXXXX.npz``
(their float32 Inception features and logits: the Inception pass resumes too). Draws after the first
are in ``draws/seed<seed>/``; the report then holds each metric's mean (``metrics``), its std over the
draws (``metrics_std``, ddof=1) and every draw's metrics (``draws``).

Class-conditional models (``model.num_classes > 0``) follow the class-conditional protocol: sample i
of each draw asks for class ``i % num_classes`` (``labels=auto``, i.e. balanced; ``labels=null`` draws
unconditional samples from the null class), with classifier-free guidance at ``guidance_scale``
(null: none); ``report.json``'s ``protocol.class_conditional`` records both. The reference statistics are
those of the dataset's images, as for an unconditional model; the NLL is the unconditional one (the
network given the null class).
"""

from __future__ import annotations

import dataclasses
import logging
from pathlib import Path
from typing import Any

import hydra
import torch
from omegaconf import DictConfig, OmegaConf

from ddpm.cli.labels import labels_for
from ddpm.cli.task_wrapper import run_app, run_task
from ddpm.errors import ConfigError
from ddpm.evaluation.distributed import barrier, broadcast_object, rank_and_world, setup_distributed
from ddpm.evaluation.fid_is import FIDSettings
from ddpm.evaluation.generation import GenerationSettings
from ddpm.evaluation.inception import resolve_inception_weights
from ddpm.evaluation.inception_check import check_inception, verdict_line
from ddpm.evaluation.nll import NLLSettings
from ddpm.evaluation.paper_numbers import dataset_family, paper_numbers
from ddpm.evaluation.protocol import (
    EvalJob,
    EvalSettings,
    draw_dir,
    draw_seeds,
    fid_is_stage,
    generate_stage,
    inception_stage,
    nll_stage,
    protocol_record,
    save_grid,
)
from ddpm.evaluation.reference_stats import describe_datamodule, split_dataset
from ddpm.evaluation.report import spread, summary_lines
from ddpm.evaluation.wandb_report import log_report, start_wandb
from ddpm.io.atomic import atomic_write_json
from ddpm.io.shards import ShardStore
from ddpm.io.stored_config import instantiate_stored
from ddpm.sampling.guidance import with_guidance
from ddpm.utils.compile import compile_for_sampling
from ddpm.utils.config import config_dir
from ddpm.utils.device import resolve_device
from ddpm.utils.precision import set_tf32_policy
from ddpm.weights import get_preset, load_model
from ddpm.weights.released import LoadedModel

log = logging.getLogger(__name__)


def eval_settings(cfg: DictConfig) -> EvalSettings:
    """The small settings objects of the stages, from the composed config."""
    m = cfg.metrics
    metrics = OmegaConf.to_container(m, resolve=True)
    nll = None
    if m.nll.enabled:
        values = {k: v for k, v in metrics["nll"].items() if k != "enabled"}
        nll = NLLSettings(**values, seed=int(cfg.seed), num_workers=int(m.num_workers))
    generation = GenerationSettings(
        **OmegaConf.to_container(cfg.generation, resolve=True), seed=int(cfg.seed)
    )
    settings = EvalSettings(
        generation=generation,
        fid_is=FIDSettings.from_mapping(metrics),
        nll=nll,
        fid=bool(m.fid),
        inception_score=bool(m.inception_score),
        progress=bool(cfg.progress),
    )
    if not (settings.needs_inception or settings.nll):  # refused before hours of sampling
        raise ConfigError(
            "nothing to compute: metrics.fid, metrics.inception_score, metrics.kid, metrics.precision_recall "
            "and metrics.nll.enabled are all false: enable one (e.g. metrics.fid=true), or draw samples "
            "alone with ddpm-sample"
        )
    return settings


def _images_only(data: Any) -> DictConfig:
    """A data config that yields plain images (the references and the NLL need no class labels)."""
    data = OmegaConf.create(OmegaConf.to_container(data, resolve=True) if OmegaConf.is_config(data) else data)
    if data.get("class_labels"):
        data.class_labels = False
    return data


def build_datamodule(cfg: DictConfig, loaded: LoadedModel | None) -> Any:
    """The data config given on the command line, else the one stored in our checkpoint."""
    if cfg.get("data") is not None:
        return hydra.utils.instantiate(_images_only(cfg.data))
    if loaded is not None and loaded.config and loaded.config.get("data"):
        stored = loaded.config["data"]  # from the checkpoint: its targets are checked, its strings literal
        labels = isinstance(stored, dict) and stored.get("class_labels")
        images_only = {"class_labels": False} if labels else {}
        return instantiate_stored(stored, loaded.source, "data", **images_only)
    preset = get_preset(cfg.get("pretrained"))
    hint = (
        f"data={preset.data}"
        if preset is not None
        else "data=cifar10 (or the dataset the model was trained on)"
    )
    raise ConfigError(f"no dataset for the reference statistics: add {hint} to the command line")


def output_directory(cfg: DictConfig) -> Path:
    """Rank 0's output directory on every rank (each rank's Hydra may have picked its own timestamp)."""
    return Path(str(broadcast_object(str(Path(cfg.output_dir).resolve()))))


def prepare(cfg: DictConfig, settings: EvalSettings, device: torch.device) -> EvalJob:
    """Load the model and find the dataset, failing before hours of sampling, not after."""
    if not cfg.get("ckpt_path"):
        raise ConfigError(
            "no model to evaluate: pass ckpt_path=/path/to/last.ckpt (or a released-weights folder/file)"
        )
    loaded = load_model(cfg.ckpt_path, cfg.get("pretrained"), cfg.use_ema, cfg.get("var_type"))
    datamodule = build_datamodule(cfg, loaded) if (settings.fid or settings.nll) else None
    needed = list(settings.fid_is.reference_splits) if settings.fid else []
    for split in dict.fromkeys(needed + ([settings.nll.split] if settings.nll else [])):
        split_dataset(datamodule, split)  # a missing dataset is reported now (and downloaded once)
    diffusion = loaded.diffusion.to(device)
    scale = cfg.get("guidance_scale")
    sampler = with_guidance(hydra.utils.instantiate(cfg.sampler)(diffusion), scale)
    net = loaded.net.to(device).eval()
    num_classes = int(getattr(net, "num_classes", 0))
    spec = cfg.get("labels")
    spec = ("balanced" if num_classes else None) if spec == "auto" else spec
    labels = labels_for(spec, settings.generation.num_samples, num_classes, scale)
    job = EvalJob(loaded, net, diffusion, sampler, datamodule=datamodule, device=device, labels=labels)
    job.sampling_net = compile_for_sampling(net) if cfg.get("compile") else None
    return job


def run_checks(cfg: DictConfig, device: torch.device, out_dir: Path) -> dict[str, Any]:
    """``mode=check_inception``: the Inception setup on real data."""
    settings = FIDSettings.from_mapping(OmegaConf.to_container(cfg.metrics, resolve=True))
    report = check_inception(build_datamodule(cfg, None), settings, device, progress=bool(cfg.progress))
    line = verdict_line(report)
    if rank_and_world()[0] == 0:
        atomic_write_json(out_dir / "inception_check.json", report)
        print("\n".join(["Inception check:", *summary_lines(report["metrics"], report["expected"]), line]))
    return report


def write_outputs(job: EvalJob, report: dict[str, Any], out_dir: Path, cache_hits: dict[str, bool]) -> None:
    """``report.json`` (metrics and protocol only), ``run_info.json`` (timings) and the summary (rank 0)."""
    if rank_and_world()[0] != 0:
        return
    atomic_write_json(out_dir / "report.json", report)
    info = {"output_dir": str(out_dir), "world_size": rank_and_world()[1], "timings": job.timings}
    atomic_write_json(out_dir / "run_info.json", {**info, "reference_cache_hits": cache_hits})
    title = f"Evaluation of {job.loaded.source} ({job.loaded.weights} weights):"
    lines = summary_lines(report["metrics"], report["expected"], report.get("metrics_std"))
    if "draws" in report:
        title += f" mean +- std over {len(report['draws'])} draws (seeds {report['protocol']['seeds']})"
    print("\n".join([title, *lines]))
    print(f"Report: {out_dir / 'report.json'}")


def generate_draws(
    job: EvalJob, settings: EvalSettings, seeds: list[int], out_dir: Path
) -> list[tuple[ShardStore, list[int]]]:
    """Generate (or resume) the samples of every draw, each in its own folder: (store, this rank's shards)."""
    draws = []
    for k, seed in enumerate(seeds):
        generation = dataclasses.replace(settings.generation, seed=seed)
        draws.append(generate_stage(job, generation, draw_dir(out_dir, k, seed), settings.progress))
    return draws


def draws_report(
    seeds: list[int], stores: list[ShardStore], per_draw: list[dict[str, float]]
) -> dict[str, Any]:
    """One draw: its metrics. Several: each metric's mean and std (ddof=1) over the draws, and each draw."""
    if len(seeds) == 1:
        return {"metrics": dict(per_draw[0])}
    mean, std = spread(per_draw)
    draws = [
        {"seed": seed, "fingerprint": store.fingerprint, "metrics": metrics}
        for seed, store, metrics in zip(seeds, stores, per_draw, strict=True)
    ]
    return {"metrics": mean, "metrics_std": std, "draws": draws}


def run_evaluation(cfg: DictConfig, device: torch.device, out_dir: Path) -> dict[str, Any]:
    """``mode=evaluate``: generate (or resume) each draw's samples, compute the metrics, write the report."""
    settings = eval_settings(cfg)
    gen = settings.generation
    seeds = draw_seeds(gen.seed, gen.num_samples, int(cfg.get("num_draws") or 1), cfg.get("seeds"))
    inception_path = None
    if settings.needs_inception:  # fail before sampling when the Inception weights are missing
        inception_path = resolve_inception_weights(
            settings.fid_is.inception_weights, settings.fid_is.allow_download
        )
    job = prepare(cfg, settings, device)
    loggers = start_wandb(cfg.get("logger"), out_dir) if rank_and_world()[0] == 0 else []
    draws = generate_draws(job, settings, seeds, out_dir)
    if rank_and_world()[0] == 0:
        save_grid(draws[0][0], gen.grid_size, out_dir / "samples.png")
    inception = inception_stage(job, settings, inception_path) if inception_path else None
    per_draw = [fid_is_stage(job, settings, st, mine, inception) if inception else {} for st, mine in draws]
    report = draws_report(seeds, [st for st, _ in draws], per_draw)
    nll = nll_stage(job, settings.nll, out_dir, settings.progress) if settings.nll else None
    if nll is not None:
        report["metrics"][f"nll_bpd_{settings.nll.split}"] = nll["bpd"]
    family = dataset_family(describe_datamodule(job.datamodule)) if job.datamodule is not None else None
    preset = get_preset(cfg.get("pretrained"))
    record = inception.record() if inception else {}
    protocol = protocol_record(job, settings, draws[0][0], record)
    if len(seeds) > 1:
        protocol["seeds"] = seeds
    report.update(
        expected=paper_numbers(dataset_family(preset.data) if preset is not None else family),
        protocol=protocol,
        nll=nll,
    )
    write_outputs(job, report, out_dir, record.get("cache_hits", {}))
    log_report(loggers, report, out_dir)  # logger=wandb: metrics, protocol, grid (rank 0)
    barrier()
    return report


def evaluate(cfg: DictConfig) -> dict[str, Any]:
    """The ``ddpm-eval`` task: join the process group, pick the device and the mode, run it."""
    setup_distributed()
    device = resolve_device(cfg.device)
    if device.type == "cuda":
        set_tf32_policy(cfg.get("float32_matmul_precision"))  # the Inception stays strict fp32 anyway
    out_dir = output_directory(cfg)
    if cfg.mode == "check_inception":
        return run_checks(cfg, device, out_dir)
    if cfg.mode != "evaluate":
        raise ConfigError(f"unknown mode {cfg.mode!r}: choose evaluate or check_inception")
    return run_evaluation(cfg, device, out_dir)


@hydra.main(version_base="1.3", config_path=str(config_dir()), config_name="eval")
def hydra_main(cfg: DictConfig) -> float | None:
    report = run_task(evaluate, cfg)
    metrics = report.get("metrics", {})
    return next((v for k, v in metrics.items() if k.startswith("fid_") and k.endswith("_train")), None)


def main() -> float | None:
    return run_app(hydra_main)


if __name__ == "__main__":
    main()
