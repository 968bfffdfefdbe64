"""What a user cannot act on stays out of the entry points' output (issue 20.4): Lightning's litlogger
tip, torch's LeafSpec deprecation (raised inside Lightning), Lightning's ``limit_train_batches=1.0`` and
``log_every_n_steps`` lines, the ``Training: 0/?`` bar, cursor-up escapes of nested bars and colour codes
in a pipe, and Optuna's colour-coded set-up lines."""

from __future__ import annotations

import optuna
import pytest

from ddpm.sweeps.optuna_sweeper import quiet_optuna
from ddpm.utils.quiet import quiet_third_party
from tests.helpers import run_cli

# each line once seen in the quickstart's output, and the text that finds it
NOISE = {
    "Lightning's litlogger tip": "litlogger",
    "torch's LeafSpec deprecation inside Lightning": "_pytree",
    "`Trainer(limit_train_batches=1.0)` was configured": "limit_train_batches",
    "fewer training batches than log_every_n_steps": "log_every_n_steps",
    "Lightning's first bar": "Training: 0",
    "an escape code (cursor up, colour) in a pipe": "\x1b[",
}


@pytest.mark.slow
def test_the_quickstart_in_a_pipe_prints_none_of_the_noise(tmp_path):
    """One real (shortened) quickstart, stdout and stderr piped as in CI: with an epoch of 23 batches
    below log_every_n_steps, validation (nested bars) and the end-of-run sampling bars."""
    result = run_cli(
        [
            "ddpm-train",
            "experiment=quickstart",
            "trainer.max_steps=20",
            "trainer.val_check_interval=10",
            "trainer.log_every_n_steps=100",
            "sampler.steps=3",
            "callbacks.digits_score.num_samples=10",
            f"hydra.run.dir={tmp_path}/run",
            f"paths.root_dir={tmp_path}",
        ],
        tmp_path,
        env={"OMP_NUM_THREADS": "1"},
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert "train: 100%" in result.stdout and "network calls x images" in result.stderr  # bars shown
    for what, text in NOISE.items():
        assert text not in result.stdout + result.stderr, what


def test_optuna_logs_through_python_logging_without_colour_or_set_up_lines(tmp_path, capfd, caplog):
    quiet_third_party()  # the entry points' (alembic)
    quiet_optuna()  # the sweeper's
    study = optuna.create_study(storage=f"sqlite:///{tmp_path}/study.db", study_name="s")
    study.tell(study.ask(), 1.0)
    captured = capfd.readouterr()
    assert "\x1b[" not in captured.err + captured.out
    infos = [r for r in caplog.records if r.name.startswith(("optuna", "alembic")) and r.levelname == "INFO"]
    assert not infos, [r.getMessage() for r in infos]
    handlers = optuna.logging._get_library_root_logger().handlers
    assert not [h for h in handlers if type(h.formatter).__name__ == "ColoredFormatter"]  # Optuna's own
