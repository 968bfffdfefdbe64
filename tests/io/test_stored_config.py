"""A config read from a file builds only this project's classes, and its ``${`` stays text
(:mod:`ddpm.io.stored_config`); the allowlist matches the shipped configs in both directions."""

from __future__ import annotations

import importlib.util
import itertools
import pickle
from pathlib import Path
from typing import Any

import hydra
import pytest
from hydra import compose, initialize_config_dir
from hydra.core.global_hydra import GlobalHydra
from omegaconf import OmegaConf

from ddpm.errors import CheckpointError
from ddpm.io.stored_config import ALLOWED_TARGETS, StoredConfigError, instantiate_stored
from ddpm.lightning.restore import module_from_checkpoint
from ddpm.utils.config import config_dir
from tests.helpers import REPO_ROOT

MODULE = "ddpm.lightning.DDPMLitModule"


class _TouchesMarker:
    """Unpickling this opens (creates) ``marker``: a pickle that runs code when loaded."""

    def __init__(self, marker: Path) -> None:
        self.marker = str(marker)

    def __reduce__(self):
        return (open, (self.marker, "w"))


@pytest.fixture
def numpy_gadget(tmp_path) -> tuple[dict, Path]:
    """``numpy.load(<pickle>, allow_pickle=True)``: would create ``marker`` if it were ever called."""
    marker, payload = tmp_path / "marker", tmp_path / "payload.pkl"
    payload.write_bytes(pickle.dumps(_TouchesMarker(marker)))
    return {"_target_": "numpy.load", "file": str(payload), "allow_pickle": True}, marker


def test_the_gadget_is_real_when_hydra_builds_it_unchecked(numpy_gadget):
    gadget, marker = numpy_gadget
    hydra.utils.instantiate(OmegaConf.create(gadget))
    assert marker.exists()  # so the refusals below are what keeps it from running


def _shapes(gadget: dict) -> dict[str, tuple[dict, str]]:
    """Each place a gadget can hide in a module config, and the key path the refusal names."""
    partial = {**gadget, "_partial_": True}
    unet_args = {"_target_": "ddpm.models.UNet", "_args_": [gadget]}
    not_recursive = {"_target_": MODULE, "_recursive_": False, "loss": {"extra": [{"x": gadget}]}}
    return {
        "top level": (gadget, "module._target_ = numpy.load"),
        "nested dict": ({"_target_": MODULE, "net": gadget}, "module.net._target_ = numpy.load"),
        "in _args_": ({"_target_": MODULE, "net": unet_args}, "module.net._args_[0]._target_ = numpy.load"),
        "partial": ({"_target_": MODULE, "optimizer": partial}, "module.optimizer._target_ = numpy.load"),
        "not recursive": (not_recursive, "module.loss.extra[0].x._target_ = numpy.load"),
        "not a string": ({"_target_": MODULE, "net": {"_target_": ["numpy.load"]}},
                         "module.net._target_ = ['numpy.load']"),
        "a number": ({"_target_": 3}, "module._target_ = 3"),
        "a near miss": ({"_target_": " ddpm.models.UNet"}, "module._target_ = ' ddpm.models.UNet'"),
        # _convert_=none would make Hydra read a stored string a third time: a way to resolve "${...}"
        "a _convert_": ({"_target_": MODULE, "net": {"_convert_": "none"}}, "module.net._convert_ = none"),
    }  # fmt: skip


@pytest.mark.parametrize("shape", list(_shapes({})))
def test_every_gadget_shape_is_refused_in_one_line_before_anything_runs(numpy_gadget, shape):
    gadget, marker = numpy_gadget
    config, named = _shapes(gadget)[shape]
    with pytest.raises(StoredConfigError) as refused:
        instantiate_stored(config, "received.ckpt", "module")
    message = str(refused.value)
    assert isinstance(refused.value, CheckpointError) and len(message.splitlines()) == 1
    assert message.startswith(f"received.ckpt: {named}") and "; refusing to build it" in message, message
    assert "nothing was run" in message and "ddpm-train" in message
    assert not marker.exists()


def test_a_file_copying_data_config_copies_nothing(tmp_path):
    secret, copy = tmp_path / "secret", tmp_path / "copied"
    secret.write_text("private")
    with pytest.raises(StoredConfigError, match=r"data\._target_ = shutil\.copy is not a class"):
        instantiate_stored(
            {"_target_": "shutil.copy", "src": str(secret), "dst": str(copy)}, "x.ckpt", "data"
        )
    assert not copy.exists()


def test_a_self_referencing_or_targetless_config_is_refused():
    loop: dict[str, Any] = {"_target_": MODULE}
    loop["net"] = loop
    with pytest.raises(StoredConfigError, match="nested more than"):
        instantiate_stored(loop, "x.ckpt", "module")
    for node in ({"net": {}}, "numpy.load", ["numpy.load"]):
        with pytest.raises(StoredConfigError, match="not a config with a _target_"):
            instantiate_stored(node, "x.ckpt", "module")


def test_a_gadget_checkpoint_is_refused_by_the_restore_path(numpy_gadget):
    gadget, marker = numpy_gadget
    checkpoint = {"state_dict": {}, "ddpm_config": {"module": {"_target_": MODULE, "net": gadget}}}
    with pytest.raises(StoredConfigError, match=r"^x\.ckpt: module\.net\._target_ = numpy\.load is not"):
        module_from_checkpoint(checkpoint, "x.ckpt")
    assert not marker.exists()


TRICKY = ["${oc.env:HOME}", "\\${oc.env:HOME}", "\\\\${oc.env:HOME}", "\\\\\\${oc.env:HOME}", "a${x}b",
          "${${oc.env:HOME}}", "x\\", "}${", "${oc.env:HOME"]  # fmt: skip


def _ddim(**kwargs: Any) -> dict[str, Any]:
    return {"_target_": "ddpm.sampling.DDIMSampler", "_partial_": True, **kwargs}


def test_stored_interpolations_stay_literal_strings_at_every_position(monkeypatch):
    monkeypatch.setenv("HOME", "/resolved/home")
    nested = _ddim(_args_=[TRICKY, {"deep": TRICKY}], spacing=TRICKY[0])
    config = _ddim(spacing=TRICKY[0], timesteps=[*TRICKY, {"deep": TRICKY}], eta=nested,
                   steps=_ddim(_recursive_=False, timesteps={"raw": TRICKY}))  # fmt: skip
    built = instantiate_stored(config, "x.ckpt", "sampler")
    assert built.keywords["spacing"] == TRICKY[0]
    assert built.keywords["timesteps"] == [*TRICKY, {"deep": TRICKY}]
    assert built.keywords["eta"].args == ([*TRICKY], {"deep": TRICKY})
    assert built.keywords["eta"].keywords == {"spacing": TRICKY[0]}
    assert built.keywords["steps"].keywords == {"timesteps": {"raw": TRICKY}}
    assert config["spacing"] == "${oc.env:HOME}"  # the caller's tree is not changed
    data = instantiate_stored({"_target_": "ddpm.data.ImageFolderDataModule", "path": TRICKY[0]}, "x", "data")
    assert "/resolved/home" not in repr(vars(data)) and "${oc.env:HOME}" in repr(vars(data))


def test_overrides_replace_stored_arguments():
    config = {"_target_": "ddpm.sampling.DDIMSampler", "_partial_": True, "steps": 50}
    assert instantiate_stored(config, "x.ckpt", "sampler", steps=7).keywords["steps"] == 7


def test_a_run_directory_sampler_goes_through_the_allowlist(tmp_path, numpy_gadget):
    path = REPO_ROOT / "benchmarks" / "quickstart_cost.py"
    spec = importlib.util.spec_from_file_location("quickstart_cost", path)
    quickstart_cost = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(quickstart_cost)
    (tmp_path / ".hydra").mkdir()
    sampler = {"_target_": "ddpm.sampling.DDIMSampler", "_partial_": True, "steps": 20, "eta": 0.0}
    OmegaConf.save({"sampler": sampler}, tmp_path / ".hydra" / "config.yaml")
    build, label = quickstart_cost.run_grid_sampler(tmp_path)
    assert build.keywords == {"steps": 20, "eta": 0.0}
    assert label == {"sampler": "DDIMSampler", "steps": 20, "eta": 0.0}
    OmegaConf.save({"sampler": numpy_gadget[0]}, tmp_path / ".hydra" / "config.yaml")
    with pytest.raises(StoredConfigError, match=r"sampler\._target_ = numpy\.load is not a class"):
        quickstart_cost.run_grid_sampler(tmp_path)
    assert not numpy_gadget[1].exists()


@pytest.mark.parametrize("name", sorted(ALLOWED_TARGETS))
def test_every_allowed_target_imports(name):
    assert isinstance(hydra.utils.get_class(name), type)


# The groups a stored config rebuilds: ``module`` and ``data`` from a checkpoint's ddpm_config (``model``
# and ``diffusion`` are interpolated into ``module``), ``sampler`` from a run's .hydra/config.yaml.
REBUILT = ("module", "data", "sampler", "model", "diffusion")
# Built from the command line's config only, never from a file: not in the allowlist.
NEVER_REBUILT = ("trainer", "callbacks", "logger")


def _specials(node: Any) -> list[tuple[str, Any]]:
    """``(key, value)`` of every ``_target_`` and ``_convert_`` in a plain config tree."""
    if isinstance(node, dict):
        own = [(k, node[k]) for k in ("_target_", "_convert_") if k in node]
        return own + [item for value in node.values() for item in _specials(value)]
    if isinstance(node, list):
        return [item for value in node for item in _specials(value)]
    return []


def _compositions(entry: str) -> list[list[str]]:
    """Override sets that together pick every option of every group of ``entry``'s defaults list: the
    i-th option of each group in one composition; ``experiment``, ``hparams_search`` and ``debug`` (which
    override other groups) in compositions of their own."""
    defaults = OmegaConf.load(config_dir() / f"{entry}.yaml").defaults
    groups = [g for item in defaults if not isinstance(item, str) for g in item if g != "hydra"]
    options = {g: sorted(p.stem for p in (config_dir() / g).glob("*.yaml")) for g in groups}
    own = [g for g in groups if g in ("experiment", "hparams_search", "debug")]
    plain = [g for g in groups if g not in own]
    sets = [[f"{g}={opts[i % len(opts)]}" for g, opts in ((g, options[g]) for g in plain)]
            for i in range(max((len(options[g]) for g in plain), default=1))]  # fmt: skip
    extra = itertools.zip_longest(*([f"{g}={o}" for o in options[g]] for g in own))
    return sets + [[o for o in row if o] for row in extra]


def _shipped_specials() -> dict[str, set[tuple[str, Any]]]:
    """Every ``_target_`` (and ``_convert_``) of every shipped composition, by top-level key; the
    rebuilt subtrees resolved, as ddpm-train stores them."""
    found: dict[str, set[tuple[str, Any]]] = {}
    GlobalHydra.instance().clear()
    with initialize_config_dir(str(config_dir()), version_base="1.3"):
        for entry in ("train", "eval", "sample", "export"):
            for overrides in _compositions(entry):
                cfg = compose(entry, overrides=overrides)
                for key, node in cfg.items_ex(resolve=False):
                    if OmegaConf.is_config(node):
                        tree = OmegaConf.to_container(node, resolve=key in REBUILT)
                        found.setdefault(str(key), set()).update(_specials(tree))
    return found


def test_the_allowlist_is_exactly_what_the_shipped_configs_rebuild():
    found = _shipped_specials()
    rebuilt = set().union(*(found.get(key, set()) for key in REBUILT))
    targets = {value for special, value in rebuilt if special == "_target_"}
    assert targets - ALLOWED_TARGETS == set(), "a shipped config would be refused when read back"
    assert ALLOWED_TARGETS - targets == set(), "allowed but no shipped config builds it: drop it"
    assert {special for special, _ in rebuilt} == {"_target_"}, "a shipped config sets _convert_"
    elsewhere = {key for key, specials in found.items() if specials} - set(REBUILT)
    assert elsewhere <= set(NEVER_REBUILT), f"targets under {elsewhere}: rebuilt from a file? list them"
    assert {"ddpm.models.UNet", "torch.optim.Adam", "ddpm.data.CIFAR10DataModule"} <= targets
