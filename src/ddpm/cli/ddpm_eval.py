"""``ddpm-eval``: FID / IS / NLL of a checkpoint or of the released DDPM weights, by the paper's protocol.

    ddpm-eval ckpt_path=logs/ddpm_cifar10/runs/<run>/checkpoints/last.ckpt          # ours (EMA weights)
    ddpm-eval ckpt_path=/models/ddpm-cifar10-32 pretrained=cifar10 data=cifar10      # diffusers folder
    ddpm-eval ckpt_path=/models/ema_diffusion_cifar10_model/model-790000.ckpt pretrained=cifar10 data=cifar10
    ddpm-eval ... metrics.nll.enabled=true                 # + bits/dim on the test set
    ddpm-eval ... metrics.kid=true metrics.precision_recall=true   # + KID, precision/recall (same pass)
    ddpm-eval ... metrics.precision_recall=true metrics.pr_features=vgg16   # P/R in VGG-16 space
    ddpm-eval ... num_draws=3          # seeds 0.., 50000.., 100000..: mean +- std over 3 draws
    ddpm-eval ckpt_path=<class-conditional run> guidance_scale=1   # labels i % num_classes, guided
    ddpm-eval ... hydra.run.dir=<dir of an interrupted run>                           # resume
    torchrun --nproc_per_node=8 -m ddpm.cli.ddpm_eval ... hydra.run.dir=<dir>                  # 8 GPUs
    ddpm-eval mode=check_inception data=cifar10    # real-data IS / train-vs-test FID: 11.24 / 3.15?

Default protocol: 50,000 samples, every one of the T=1000 ancestral steps, EMA weights; FID against
the training and the test set; IS with 10 splits and with 1 split. Writes ``report.json`` (metrics and
protocol only, so a resumed run writes the same file), ``run_info.json`` (timings, cache hits),
``samples.png``, ``samples/samples_XXXXX.npz`` (uint8 [n, H, W, C]) and ``features/features_XXXXX.npz``
(their float32 Inception features and logits: the Inception pass resumes too; ``features_vgg16/`` holds
their VGG-16 features with ``metrics.pr_features=vgg16``). Draws after the first
are in ``draws/seed<seed>/``; the report then holds each metric's mean (``metrics``), its std over the
draws (``metrics_std``, ddof=1) and every draw's metrics (``draws``).

Class-conditional models (``model.num_classes > 0``) follow the class-conditional protocol: sample i
of each draw asks for class ``i % num_classes`` (``labels=auto``, i.e. balanced; ``labels=null`` draws
unconditional samples from the null class), with classifier-free guidance at ``guidance_scale``
(null: none); ``report.json``'s ``protocol.class_conditional`` records both. The reference statistics are
those of the dataset's images, as for an unconditional model; the NLL is the unconditional one (the
network given the null class).

This entry point composes the settings and the job from the config, runs the pipeline
(:func:`ddpm.evaluation.pipeline.evaluate_job`), prints its summary and logs it to W&B if configured.
"""

from __future__ import annotations

import dataclasses
import logging
from pathlib import Path
from typing import Any

import hydra
import torch
from omegaconf import DictConfig, OmegaConf

from ddpm.cli.labels import labels_for, null_class_use
from ddpm.cli.task_wrapper import run_app, run_task
from ddpm.cli.wandb_report import log_report, start_wandb
from ddpm.diffusion.denoiser import LABELS_KEY
from ddpm.errors import ConfigError
from ddpm.evaluation.datasets import split_dataset
from ddpm.evaluation.fid_is import FIDSettings
from ddpm.evaluation.generation import GenerationSettings
from ddpm.evaluation.inception_check import check_inception, verdict_line
from ddpm.evaluation.job import EvalJob, EvalSettings, draw_seeds
from ddpm.evaluation.nll import NLLSettings
from ddpm.evaluation.pipeline import evaluate_job, feature_weights
from ddpm.evaluation.report import summary_lines
from ddpm.io.atomic import atomic_write_json
from ddpm.io.stored_config import instantiate_stored
from ddpm.sampling.guidance import with_guidance
from ddpm.utils.compile import compile_for_sampling
from ddpm.utils.config import config_dir
from ddpm.utils.device import resolve_device
from ddpm.utils.distributed import barrier, broadcast_object, rank_and_world, setup_distributed
from ddpm.utils.precision import set_tf32_policy
from ddpm.weights import get_preset, load_model
from ddpm.weights.loaded import LoadedModel, check_null_class

log = logging.getLogger(__name__)


def eval_settings(cfg: DictConfig) -> EvalSettings:
    """The small settings objects of the stages, from the composed config; refuses a command with nothing
    to compute or with overlapping draws before any work."""
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
        digits_score=m.get("digits_score", "auto") is True,  # auto: decided by the model's data (prepare)
    )
    if m.get("digits_score", "auto") != "auto":
        check_something_to_compute(settings)  # refused before hours of sampling
    num_draws = int(cfg.get("num_draws") or 1)
    seeds = draw_seeds(generation.seed, generation.num_samples, num_draws, cfg.get("seeds"))
    return dataclasses.replace(settings, seeds=tuple(seeds))


def check_something_to_compute(settings: EvalSettings) -> None:
    """An evaluation whose metrics are all off is refused (before any sampling)."""
    if not settings.computes_anything:
        raise ConfigError(
            "nothing to compute: metrics.fid, metrics.inception_score, metrics.kid, "
            "metrics.precision_recall, metrics.nll.enabled and metrics.digits_score are all off: enable one "
            "(e.g. metrics.fid=true), or draw samples alone with ddpm-sample"
        )


def data_target(cfg: DictConfig, loaded: LoadedModel | None) -> str:
    """The data module class the evaluation's data config names (the command line's, else the stored one)."""
    if cfg.get("data") is not None:
        return str(cfg.data.get("_target_", ""))
    stored = (loaded.config or {}).get("data") if loaded is not None else None
    return str(stored.get("_target_", "")) if isinstance(stored, dict) else ""


def with_digits_score(cfg: DictConfig, settings: EvalSettings, loaded: LoadedModel) -> EvalSettings:
    """``metrics.digits_score=auto``: on for a model of the digits; then an evaluation with nothing to
    compute is refused (before any sampling)."""
    if cfg.metrics.get("digits_score", "auto") != "auto":
        return settings
    digits = data_target(cfg, loaded).endswith("DigitsDataModule")
    settings = dataclasses.replace(settings, digits_score=digits)
    check_something_to_compute(settings)
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
    num_classes = int(getattr(loaded.net, "num_classes", 0))
    spec = cfg.get("labels")
    spec = ("balanced" if num_classes else None) if spec == "auto" else spec
    scale = cfg.get("guidance_scale")
    use = null_class_use(spec, scale, nll=settings.nll is not None)
    if use is not None:  # before the dataset and hours of sampling
        check_null_class(loaded, use, cfg.get("null_class_trained"))
    datamodule = build_datamodule(cfg, loaded) if (settings.needs_references or settings.nll) else None
    needed = list(settings.fid_is.reference_splits) if settings.needs_references else []
    for split in dict.fromkeys(needed + ([settings.nll.split] if settings.nll else [])):
        split_dataset(datamodule, split)  # a missing dataset is reported now (and downloaded once)
    diffusion = loaded.diffusion.to(device)
    sampler = with_guidance(hydra.utils.instantiate(cfg.sampler)(diffusion), scale)
    net = loaded.net.to(device).eval()
    labels = labels_for(spec, settings.generation.num_samples, num_classes, scale)
    cond = None if labels is None else {LABELS_KEY: labels}
    job = EvalJob(loaded, net, diffusion, sampler, datamodule=datamodule, device=device, cond=cond)
    job.sampling_net = compile_for_sampling(net) if cfg.get("compile") else None
    job.pretrained = cfg.get("pretrained")  # its dataset picks the published numbers of the report
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


def print_summary(job: EvalJob, report: dict[str, Any], out_dir: Path) -> None:
    """The metrics beside the published numbers, and where the report is (rank 0)."""
    if rank_and_world()[0] != 0:
        return
    title = f"Evaluation of {job.loaded.source} ({job.loaded.weights} weights):"
    lines = summary_lines(report["metrics"], report["expected"], report.get("metrics_std"))
    if "draws" in report:
        title += f" mean +- std over {len(report['draws'])} draws (seeds {report['protocol']['seeds']})"
    held_out = report.get("reference", {}).get("held_out_digits")
    if held_out is not None:
        lines.append(
            f"  held-out real digits ({held_out['num_images']}): digits score {held_out['score']:.4f}, "
            f"Fréchet {held_out['frechet']:.4f} (the baseline at the same N, up to 180)"
        )
    print("\n".join([title, *lines]))
    print(f"Report: {out_dir / 'report.json'}")


def run_evaluation(cfg: DictConfig, device: torch.device, out_dir: Path) -> dict[str, Any]:
    """``mode=evaluate``: the settings and the job from the config, then the pipeline; the W&B run (if
    configured) starts before the sampling, so a missing login fails before hours of work."""
    settings = eval_settings(cfg)
    weights = feature_weights(settings)  # a missing file fails now, before the sampling
    job = prepare(cfg, settings, device)
    settings = with_digits_score(cfg, settings, job.loaded)
    loggers = start_wandb(cfg.get("logger"), out_dir) if rank_and_world()[0] == 0 else []
    report = evaluate_job(job, settings, out_dir, weights)
    print_summary(job, report, out_dir)
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
