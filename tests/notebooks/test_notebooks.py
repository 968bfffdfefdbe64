"""Every notebook runs top to bottom once (on CPU, from the notebooks/ directory), stored without outputs."""

from __future__ import annotations

import os
from pathlib import Path

import nbformat
import pytest
from nbclient import NotebookClient

NOTEBOOKS = Path(__file__).resolve().parents[2] / "notebooks"
FIGURES = {
    "forward_process",
    "progressive_generation",
    "shared_latent",
    "interpolation_t50",
    "inpainting",
    "rate_distortion",
    "samplers",
}


def _execute(path: Path, env: dict[str, str] | None = None, timeout: int = 600) -> nbformat.NotebookNode:
    notebook = nbformat.read(path, as_version=4)
    old = {k: os.environ.get(k) for k in env or {}}
    os.environ.update(env or {})  # the kernel inherits this process's environment
    try:
        client = NotebookClient(
            notebook,
            timeout=timeout,
            kernel_name="python3",
            resources={"metadata": {"path": str(path.parent)}},
        )
        return client.execute()
    finally:
        for k, v in old.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


@pytest.mark.parametrize("path", sorted(NOTEBOOKS.glob("*.ipynb")), ids=lambda p: p.stem)
def test_notebook_is_stored_without_outputs(path):
    notebook = nbformat.read(path, as_version=4)
    for cell in notebook.cells:
        if cell.cell_type == "code":
            assert cell.outputs == [] and cell.execution_count is None, "strip outputs (nbstripout)"


def test_forward_process_notebook_runs():
    # without a quickstart checkpoint it trains its small model: 10 steps here, not a user's 150
    _execute(NOTEBOOKS / "01_forward_process_and_samples.ipynb", {"DDPM_NOTEBOOK_TRAIN_STEPS": "10"})


def test_paper_figures_notebook_draws_every_figure(tmp_path):
    out = tmp_path / "figures"
    env = {"DDPM_NOTEBOOK_FAST": "1", "DDPM_NOTEBOOK_OUT": str(out)}
    done = _execute(NOTEBOOKS / "paper_figures.ipynb", env)
    assert {p.stem for p in out.glob("*.png")} == FIGURES
    shown = [o.get("data", {}) for cell in done.cells for o in cell.get("outputs", [])]
    shown = [data for data in shown if "text/plain" in data and "Figure" in data["text/plain"]]
    assert len(shown) == len(FIGURES) and all("image/png" in data for data in shown)  # images, not text


@pytest.mark.long
def test_paper_figures_notebook_default_run(tmp_path):
    """The full notebook: trains the tiny model (a few minutes on 2 cores) and draws the figures."""
    out = tmp_path / "figures"
    env = {"DDPM_NOTEBOOK_FAST": "0", "DDPM_NOTEBOOK_OUT": str(out), "DDPM_NOTEBOOK_CKPT": ""}
    _execute(NOTEBOOKS / "paper_figures.ipynb", env, timeout=1800)
    assert len(list(out.glob("*.png"))) == len(FIGURES) + 2
