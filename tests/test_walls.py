"""The walls between the packages of src/ddpm, read from the imports of every file (also inside functions).

* the diffusion maths (``diffusion/``, ``sampling/``) is plain PyTorch: no Lightning, no Hydra, and none of
  the network, the data, the evaluation, the callbacks or the entry points;
* the network (``models/``) and the data (``data/``) know no sampler and no metric; the data knows no model.

Importing ``ddpm.sampling`` (and so ``ddpm.diffusion``) in a fresh interpreter loads neither Lightning nor
Hydra, also not through a module of another package.
"""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SRC = ROOT / "src" / "ddpm"

THE_REST = {"ddpm.callbacks", "ddpm.cli", "ddpm.evaluation", "ddpm.lightning", "ddpm.weights", "ddpm.figures"}
FORBIDDEN = {
    "diffusion": {"lightning", "hydra", "ddpm.sampling", "ddpm.models", "ddpm.data", *THE_REST},
    "sampling": {"lightning", "hydra", "ddpm.models", "ddpm.data", *THE_REST},
    "models": {"ddpm.sampling", "ddpm.data", *THE_REST},
    "data": {"ddpm.sampling", "ddpm.models", *THE_REST},
}


def imports_of(path: Path) -> set[str]:
    """Every absolute module name a file imports (``from a.b import c`` gives ``a.b`` and ``a.b.c``)."""
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names.add(node.module)
            names.update(f"{node.module}.{alias.name}" for alias in node.names)
    return names


def crosses(name: str, walls: set[str]) -> bool:
    return any(name == wall or name.startswith(wall + ".") for wall in walls)


@pytest.mark.parametrize("package", sorted(FORBIDDEN))
def test_no_import_crosses_a_wall(package):
    files = sorted((SRC / package).rglob("*.py"))
    assert files, f"no files under src/ddpm/{package}"
    crossings = [
        f"{path.relative_to(ROOT)} imports {name}"
        for path in files
        for name in sorted(imports_of(path))
        if crosses(name, FORBIDDEN[package])
    ]
    assert not crossings, "\n".join(crossings)


def test_the_scan_sees_an_import_across_a_wall(tmp_path):
    # guards the scan itself: a lazy import inside a function counts
    probe = tmp_path / "probe.py"
    probe.write_text("def f():\n    from ddpm.sampling.guidance import with_guidance\n")
    assert crosses("ddpm.sampling.guidance.with_guidance", FORBIDDEN["models"])
    assert "ddpm.sampling.guidance" in imports_of(probe)


def test_importing_the_sampling_maths_loads_neither_lightning_nor_hydra():
    code = (
        "import sys, ddpm.sampling, ddpm.diffusion\n"
        "print(sorted(m for m in ('lightning', 'hydra', 'ddpm.models', 'ddpm.data') if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]", out.stdout + out.stderr
