"""ddpm-sample's log line names the inner sampler of guidance, counts what its progress bar counts (network
calls x rows per image) and gives diffusers' guidance_scale (1 + w) beside the paper's w."""

from __future__ import annotations

import logging

from ddpm.diffusion.gaussian import GaussianDiffusion
from ddpm.sampling import make_sampler
from ddpm.sampling.guidance import describe_sampling
from tests.evaluation.helpers import write_lightning_checkpoint
from tests.evaluation.test_conditional_eval import CONDITIONAL, compose_sample

DIFFUSION = GaussianDiffusion(num_timesteps=100)


def test_the_description_counts_both_rows_and_names_the_inner_sampler():
    assert describe_sampling(make_sampler("ddim", DIFFUSION, steps=50)) == (
        "DDIMSampler (50 network calls per image)"
    )
    guided = make_sampler("ddim", DIFFUSION, steps=50, guidance_scale=3.0)
    assert describe_sampling(guided) == (
        "DDIMSampler under classifier-free guidance w=3 (diffusers' guidance_scale=4): 50 network calls "
        "per image of 2 rows (conditional + unconditional), 100 in all"
    )
    plain = make_sampler("ancestral", DIFFUSION, guidance_scale=0.0)
    assert describe_sampling(plain) == (
        "AncestralSampler under classifier-free guidance w=0 (diffusers' guidance_scale=1): 100 network "
        "calls per image (plain conditional: no unconditional row)"
    )
    assert "w=-1 (diffusers' guidance_scale=0)" in describe_sampling(
        make_sampler("ddim", DIFFUSION, steps=5, guidance_scale=-1.0)
    )


def test_ddpm_sample_logs_the_description(tmp_path, caplog):
    from ddpm.cli.ddpm_sample import generate_images

    ckpt = tmp_path / "last.ckpt"
    write_lightning_checkpoint(ckpt, tmp_path / "run", CONDITIONAL)
    overrides = [f"ckpt_path={ckpt}", "sampler=ddim", "sampler.steps=2", "progress=false", "num_samples=2"]
    overrides += ["labels=balanced", "guidance_scale=1.5", "device=cpu", f"output_dir={tmp_path}/out"]
    with caplog.at_level(logging.INFO, logger="ddpm.cli.ddpm_sample"):
        generate_images(compose_sample(overrides))
    assert (
        "Sampling 2 images (1, 16, 16) with DDIMSampler under classifier-free guidance w=1.5 "
        "(diffusers' guidance_scale=2.5): 2 network calls per image of 2 rows" in caplog.text
    )
