"""notebooks/paper_figures.ipynb runs top to bottom (in its fast smoke mode) and draws every figure."""

from __future__ import annotations

import os
from pathlib import Path

import nbformat
import pytest
from nbclient import NotebookClient

NOTEBOOK = Path(__file__).resolve().parents[2] / "notebooks" / "paper_figures.ipynb"
FIGURES = {
    "forward_process",
    "progressive_generation",
    "shared_latent",
    "interpolation_t50",
    "inpainting",
    "rate_distortion",
    "samplers",
}


def test_notebook_is_stored_without_outputs():
    nb = nbformat.read(NOTEBOOK, as_version=4)
    for cell in nb.cells:
        if cell.cell_type == "code":
            assert cell.outputs == [] and cell.execution_count is None


def _run(tmp_path: Path, env: dict[str, str], timeout: int) -> None:
    nb = nbformat.read(NOTEBOOK, as_version=4)
    old = {k: os.environ.get(k) for k in env}
    os.environ.update(env)
    try:
        NotebookClient(
            nb, timeout=timeout, kernel_name="python3", resources={"metadata": {"path": str(NOTEBOOK.parent)}}
        ).execute()
    finally:
        for k, v in old.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


def test_notebook_runs_top_to_bottom(tmp_path):
    out = tmp_path / "figures"
    _run(tmp_path, {"DDPM_NOTEBOOK_FAST": "1", "DDPM_NOTEBOOK_OUT": str(out)}, timeout=240)
    assert {p.stem for p in out.glob("*.png")} == FIGURES


@pytest.mark.slow
def test_notebook_default_run(tmp_path):
    """The full notebook: trains the tiny model (a few minutes on 2 cores) and draws the figures."""
    out = tmp_path / "figures"
    _run(
        tmp_path,
        {"DDPM_NOTEBOOK_FAST": "0", "DDPM_NOTEBOOK_OUT": str(out), "DDPM_NOTEBOOK_CKPT": ""},
        timeout=1800,
    )
    assert len(list(out.glob("*.png"))) == len(FIGURES) + 2
