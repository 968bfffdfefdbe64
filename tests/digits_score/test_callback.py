"""DigitsScoreCallback: the quickstart prints and logs the digits score of its EMA samples at the end."""

import json

import pytest

from ddpm.cli.ddpm_train import train
from ddpm.errors import ConfigError
from tests.helpers import TINY, compose_train

CALLBACK = [
    "+callbacks.digits_score._target_=ddpm.digits_score.DigitsScoreCallback",
    "+callbacks.digits_score.num_samples=6",
    "+callbacks.digits_score.batch_size=4",
    "+callbacks.digits_score.sampler._target_=ddpm.sampling.DPMSolverPPSampler",
    "+callbacks.digits_score.sampler._partial_=true",
    "+callbacks.digits_score.sampler.steps=3",
]


def test_score_is_printed_logged_and_written_at_the_end(tmp_path, capsys):
    out = tmp_path / "run"
    cfg = compose_train(
        [*TINY, "trainer.max_steps=2", *CALLBACK, f"+callbacks.digits_score.output_path={out}/score.json"],
        out,
    )
    train(cfg)
    printed = capsys.readouterr().out
    assert "Digits score of 6 EMA samples" in printed and "6 held-out real digits" in printed
    written = json.loads((out / "score.json").read_text())
    assert written["step"] == 2 and written["samples"]["num_images"] == 6
    assert 1.0 <= written["samples"]["score"] <= 10.0
    assert written["held_out_digits"]["score"] > written["samples"]["score"]  # two steps of training
    assert written["held_out_digits"]["frechet"] < written["samples"]["frechet"]
    assert written["held_out_digits"]["num_images"] == written["samples"]["num_images"] == 6


def test_8x8_digits_are_scored_and_colour_images_refused_in_one_line(tmp_path, capsys):
    from types import SimpleNamespace

    from ddpm.digits_score import DigitsScoreCallback

    out = tmp_path / "run"
    at_8x8 = ["data.image_size=8", "model.resolution=8", "model.attn_resolutions=[4]", "trainer.max_steps=1"]
    cfg = compose_train([*TINY, *at_8x8, *CALLBACK, f"+callbacks.digits_score.output_path={out}/s.json"], out)
    train(cfg)
    assert "Digits score of 6 EMA samples" in capsys.readouterr().out
    assert json.loads((out / "s.json").read_text())["samples"]["num_images"] == 6
    trainer = SimpleNamespace(datamodule=SimpleNamespace(image_shape=(3, 32, 32)))
    with pytest.raises(ConfigError, match="square grayscale digits.*drop callbacks.digits_score"):
        DigitsScoreCallback().setup(trainer, None, "fit")


def test_quickstart_scores_the_samples_its_grid_shows(tmp_path):
    """The quickstart's score is of the grid's sampler (50 ancestral steps with the posterior variance, on
    the 8x8 digits), not a cheaper stand-in."""
    from hydra.utils import instantiate

    cfg = compose_train(["experiment=quickstart"], tmp_path)
    diffusion = instantiate(cfg.diffusion)
    scored = instantiate(cfg.callbacks.digits_score).sampler_factory(diffusion)
    shown = instantiate(cfg.callbacks.sample_grid).sampler_factory(diffusion)
    assert type(scored) is type(shown) and scored.timesteps == shown.timesteps
    assert type(scored).__name__ == "AncestralSampler" and len(scored.timesteps) == 50
    assert diffusion.var_type == "fixed_small" and cfg.data.image_size == cfg.model.resolution == 8
