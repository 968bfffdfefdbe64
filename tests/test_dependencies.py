"""pyproject.toml declares what src/ddpm imports, and its lower bounds are true.

* every third-party module imported anywhere under ``src/ddpm`` (also inside functions) or named as a
  Hydra ``_target_`` in ``configs/`` belongs to a distribution in ``[project].dependencies``;
* every direct dependency is imported by the package, or listed in ``USED_WITHOUT_IMPORT`` with why;
* the installed versions satisfy the declared bounds, and the API that sets each floor exists.
"""

from __future__ import annotations

import ast
import importlib.metadata as md
import inspect
import re
import sys
import tempfile
from collections import defaultdict
from pathlib import Path
from unittest import mock

import pytest

try:
    import tomllib
except ModuleNotFoundError:  # Python 3.10: tomli comes with the dev extra (pre-commit-hooks needs it)
    tomllib = pytest.importorskip("tomli")

ROOT = Path(__file__).resolve().parents[1]
SRC = ROOT / "src" / "ddpm"
CONFIGS = ROOT / "configs"

# Direct dependencies that nothing under src imports by name, and why they are still needed.
USED_WITHOUT_IMPORT = {
    "tensorboard": "lightning's TensorBoardLogger (configs/logger/tensorboard.yaml) writes through it",
    "wandb": "lightning's WandbLogger (configs/logger/wandb.yaml); the CLI finishes the run it started",
}

# Files under src/ddpm that the package never imports: ddpm-export copies them into exported folders, where
# diffusers (the dev extra, and the user's own install) runs them.
SHIPPED_FOR_DIFFUSERS = {"src/ddpm/weights/pipeline_ddpm_conditional.py"}


def normalize(name: str) -> str:
    """PEP 503 name normalisation: ``Torch_Fidelity`` and ``torch-fidelity`` are one distribution."""
    return re.sub(r"[-_.]+", "-", name).lower()


def parse_requirement(line: str) -> tuple[str, list[tuple[str, str]]]:
    """``"name[extra]>=1.2,<2; marker"`` -> ``("name", [(">=", "1.2"), ("<", "2")])``."""
    match = re.fullmatch(r"\s*([A-Za-z0-9][A-Za-z0-9._-]*)\s*(?:\[[^\]]*\])?\s*([^;]*?)\s*(?:;.*)?", line)
    assert match, f"cannot parse requirement {line!r}"
    name, spec = match.groups()
    clauses = []
    for clause in filter(None, (c.strip() for c in spec.split(","))):
        op = re.fullmatch(r"(>=|<=|==|!=|>|<)\s*([0-9][0-9A-Za-z.+!-]*)", clause)
        assert op, f"{line!r}: only >=, <=, ==, !=, >, < are understood here, not {clause!r}"
        clauses.append((op.group(1), op.group(2)))
    return normalize(name), clauses


def release(version: str) -> tuple[int, ...]:
    """The release part of a version, padded: ``"2.13.0+cpu"`` -> ``(2, 13, 0, 0, 0)``."""
    match = re.match(r"\d+(?:\.\d+)*", version)
    assert match, f"cannot parse version {version!r}"
    parts = tuple(int(p) for p in match.group().split("."))
    return parts + (0,) * (5 - len(parts))


def satisfies(version: str, op: str, bound: str) -> bool:
    have, want = release(version), release(bound)
    return {
        ">=": have >= want,
        ">": have > want,
        "<=": have <= want,
        "<": have < want,
        "==": have == want,
        "!=": have != want,
    }[op]


def pyproject() -> dict:
    return tomllib.loads((ROOT / "pyproject.toml").read_text())


def declared(extra: str | None = None) -> dict[str, list[tuple[str, str]]]:
    project = pyproject()["project"]
    lines = project["dependencies"] if extra is None else project["optional-dependencies"][extra]
    return dict(parse_requirement(line) for line in lines)


def imported_modules() -> dict[str, set[str]]:
    """Top-level module -> the src files (and config files) that import it, stdlib and ddpm left out."""
    found: dict[str, set[str]] = defaultdict(set)
    for path in sorted(SRC.rglob("*.py")):
        where = str(path.relative_to(ROOT))
        if where in SHIPPED_FOR_DIFFUSERS:
            continue
        for node in ast.walk(ast.parse(path.read_text(), filename=where)):
            if isinstance(node, ast.Import):
                for alias in node.names:
                    found[alias.name.split(".")[0]].add(where)
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                found[node.module.split(".")[0]].add(where)
    for path in sorted(CONFIGS.rglob("*.yaml")):
        for target in re.findall(r"^\s*_target_:\s*['\"]?([A-Za-z_]\w*)", path.read_text(), re.MULTILINE):
            found[target].add(str(path.relative_to(ROOT)))
    return {
        module: files
        for module, files in found.items()
        if module not in sys.stdlib_module_names and module != "ddpm"
    }


def test_src_imports_are_found():
    # guards the scan itself: an empty or broken scan would make the next tests pass vacuously
    modules = imported_modules()
    assert {"torch", "lightning", "hydra", "numpy", "safetensors"} <= set(modules)


def test_every_imported_module_is_a_declared_dependency():
    dependencies = set(declared())
    distributions = md.packages_distributions()
    problems = []
    for module, files in sorted(imported_modules().items()):
        dists = {normalize(d) for d in distributions.get(module, [])}
        if not dists:
            problems.append(f"{module} (imported by {sorted(files)}) is not installed: cannot map it")
        elif not dists & dependencies:
            problems.append(
                f"{module} (imported by {sorted(files)}) comes from {sorted(dists)}, "
                "not in [project].dependencies"
            )
    assert not problems, "\n".join(problems)


def test_every_direct_dependency_is_used():
    distributions = md.packages_distributions()
    used = {normalize(d) for module in imported_modules() for d in distributions.get(module, [])}
    unused = sorted(set(declared()) - used - set(USED_WITHOUT_IMPORT))
    assert not unused, (
        f"{unused} are in [project].dependencies but nothing under src/ddpm or configs imports them: "
        "drop them, move them to the dev extra if only tests use them, or add them to USED_WITHOUT_IMPORT"
    )


@pytest.mark.parametrize("extra", [None, "dev"])
def test_installed_versions_satisfy_the_declared_bounds(extra):
    problems = []
    for name, clauses in declared(extra).items():
        try:
            version = md.version(name)
        except md.PackageNotFoundError:
            if extra is None:
                problems.append(f"{name} is not installed")
            continue
        problems += [
            f"{name} {version} is not {op}{bound}"
            for op, bound in clauses
            if not satisfies(version, op, bound)
        ]
    assert not problems, "\n".join(problems)


def _torch_fidelity_extractor_is_in_eval_mode() -> bool:
    import torch
    from torch_fidelity.feature_extractor_inceptionv3 import FeatureExtractorInceptionV3

    with tempfile.TemporaryDirectory() as tmp:
        empty = Path(tmp) / "empty.pth"
        torch.save({}, empty)
        with mock.patch.object(FeatureExtractorInceptionV3, "load_state_dict", lambda self, *a, **k: None):
            net = FeatureExtractorInceptionV3("inception-v3-compat", ["2048"], str(empty))
    return not net.training


def _lightning_skips_the_second_iter_on_resume() -> bool:
    from lightning.pytorch.loops.loop import _Loop

    return hasattr(_Loop, "is_resuming")


def _safetensors_load_file_takes_a_device() -> bool:
    from safetensors.torch import load_file

    return "device" in inspect.signature(load_file).parameters


def _torch_has_the_apis() -> bool:
    import torch
    import torch.nn.functional as F
    from torch.optim import swa_utils

    load = inspect.signature(torch.load).parameters
    return (
        hasattr(torch.nn.utils, "get_total_norm")  # 2.6: lightning/module.py
        and hasattr(swa_utils, "get_ema_multi_avg_fn")  # 2.1: the fused EMA
        and "multi_avg_fn" in inspect.signature(swa_utils.AveragedModel).parameters
        and {"mmap", "weights_only"} <= set(load)  # 2.1 and 1.13
        and hasattr(F, "scaled_dot_product_attention")  # 2.0: the U-Net's attention
    )


# distribution -> (the floor pyproject.toml must declare, the check of the API that sets it, why)
FLOORS = {
    "torch": ("2.6", _torch_has_the_apis, "torch.nn.utils.get_total_norm is new in 2.6"),
    "lightning": (
        "2.5.3",
        _lightning_skips_the_second_iter_on_resume,
        "2.5.3 stops re-creating the train iterator on resume (_Loop.is_resuming), the loop behaviour "
        "ResumableDataLoader is written against; first release tested with torch 2.6-2.8",
    ),
    "torch-fidelity": (
        "0.4",
        _torch_fidelity_extractor_is_in_eval_mode,
        "0.4's FeatureExtractorInceptionV3 puts itself in eval mode (0.3 leaves BatchNorm in training "
        "mode and src never calls .eval() on it) and loads with an explicit weights_only",
    ),
    "safetensors": ("0.3", _safetensors_load_file_takes_a_device, "load_file(path, device=...)"),
}


@pytest.mark.parametrize("name", sorted(FLOORS))
def test_the_api_that_sets_each_floor_exists(name):
    floor, check, why = FLOORS[name]
    clauses = declared()[name]
    assert (">=", floor) in clauses, f"pyproject.toml should declare {name}>={floor} ({why}), not {clauses}"
    assert check(), f"{name} {md.version(name)}: {why}"


def test_torchvision_floor_pairs_with_the_torch_floor():
    # torchvision 0.(m + 15) is built for torch 2.m (0.21 <-> 2.6, 0.29 <-> 2.14)
    torch_floor = dict(declared()["torch"])[">="]
    vision_floor = dict(declared()["torchvision"])[">="]
    assert release(vision_floor)[:2] == (0, release(torch_floor)[1] + 15), (torch_floor, vision_floor)


def test_hydra_floor_covers_the_version_base_of_the_entry_points():
    # @hydra.main(version_base="X.Y") asks for Hydra X.Y's behaviour: Hydra must be at least X.Y
    bases = {
        node.value
        for path in SRC.rglob("*.py")
        for node in ast.walk(ast.parse(path.read_text()))
        if isinstance(node, ast.keyword)
        and node.arg == "version_base"
        and isinstance(node.value, ast.Constant)
    }
    assert bases, "no @hydra.main(version_base=...) found under src/ddpm"
    floor = dict(declared()["hydra-core"])[">="]
    assert all(release(floor) >= release(b.value) for b in bases), (floor, sorted(b.value for b in bases))
