"""The commands the docs show, as the docs tests run them.

A page is README.md or docs/*.md. Its commands live in fenced ``bash`` blocks (and Python code in ``python``
blocks); the HTML comment on the line above a block says how the tests check it:

* (none): **run** every line as written, from the root of a clean copy of the repository, in page order,
  with only :data:`SHORTEN`'s keys appended to ``ddpm-*`` commands (step, sample and trial counts);
* ``<!-- check: compose (what it needs) -->``: every ``ddpm-*`` command (also inside ``sbatch`` and
  ``torchrun``) composes its config, as Hydra would at start-up;
* ``<!-- check: error "<text>" -->``: every line, run as written on this machine (no GPU, no internet, no
  Inception weights, no datasets), stops with exit code 2 and one ``error:`` line containing the text;
* ``<!-- check: slurm -->``: the slurm tests run these lines as written (``tests/slurm``'s ``DOCUMENTED``);
* ``<!-- check: ci -->``: ``.ci/run`` runs these lines exactly (the README's set-up commands);
* ``<!-- check: skip (why) -->``: nothing here can run them (a download); no ``ddpm-*`` command allowed.
"""

from __future__ import annotations

import re
import shlex
from dataclasses import dataclass
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[2]
# README first: the later pages may use what it made (the quickstart's run)
PAGES = [
    "README.md",
    "docs/training.md",
    "docs/clusters.md",
    "docs/evaluation.md",
    "docs/weights.md",
    "docs/samplers.md",
    "docs/conditioning.md",
    "docs/configuration.md",
    "docs/python_api.md",
    "docs/extending.md",
    "docs/development.md",
]
PROGRAMS = {"ddpm-train": "train", "ddpm-sample": "sample", "ddpm-eval": "eval", "ddpm-export": "export"}
# The only keys the run check appends, per program: step, sample and trial counts.
SHORTEN = {
    "ddpm-train": ["trainer.max_steps=20", "trainer.val_check_interval=10"],
    "ddpm-sample": ["num_samples=4", "sampler.steps=10"],
    "ddpm-eval": ["generation.num_samples=8", "sampler.steps=10", "metrics.nll.num_images=8"],
    "ddpm-export": [],
}
SHORTEN_OPTUNA = ["hydra.sweeper.n_trials=2"]
MODES = ("run", "compose", "error", "slurm", "ci", "skip")
_MARK = re.compile(r"^<!--\s*check:\s*(\w+)\s*(.*?)\s*-->$")
_ASSIGNMENT = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*=")
SCRIPTS = {"scripts/slurm/train.sbatch": "ddpm-train", "scripts/slurm/eval.sbatch": "ddpm-eval"}
TORCHRUN_MODULES = {"ddpm.cli.ddpm_eval": "ddpm-eval", "ddpm.cli.ddpm_train": "ddpm-train"}


@dataclass(frozen=True)
class Block:
    """A fenced code block of a page and how it is checked."""

    page: str
    line: int  # of the opening fence, 1-based
    lang: str
    mode: str
    arg: str  # the error text, or the stated need
    text: str

    @property
    def where(self) -> str:
        return f"{self.page}:{self.line}"

    def lines(self) -> list[str]:
        """The block's commands: continuation lines joined, blank lines and whole-line comments dropped."""
        joined, pending = [], ""
        for raw in self.text.splitlines():
            if raw.rstrip().endswith("\\"):
                pending += raw.rstrip()[:-1] + " "
                continue
            line = (pending + raw).strip()
            pending = ""
            if line and not line.startswith("#"):
                joined.append(line)
        return joined


def parse_page(page: str) -> list[Block]:
    """The ``bash`` and ``python`` blocks of ``page`` (a path relative to the repository root), with their
    checks; other fenced blocks (layout sketches) are not commands."""
    blocks, lines = [], (REPO_ROOT / page).read_text().splitlines()
    i = 0
    while i < len(lines):
        if not lines[i].strip().startswith("```"):
            i += 1
            continue
        end = next(j for j in range(i + 1, len(lines)) if lines[j].strip() == "```")
        lang = lines[i].strip()[3:].strip()
        if lang in ("bash", "python"):
            mode, arg = _mark(lines, i)
            blocks.append(Block(page, i + 1, lang, mode, arg, "\n".join(lines[i + 1 : end])))
        i = end + 1
    return blocks


def _mark(lines: list[str], fence: int) -> tuple[str, str]:
    above = lines[fence - 1].strip() if fence > 0 else ""
    match = _MARK.match(above)
    if not match:
        return "run", ""
    mode, arg = match.group(1), match.group(2).strip()
    if mode == "error":
        arg = arg.strip('"')
    return mode, arg


def all_blocks() -> list[Block]:
    return [block for page in PAGES for block in parse_page(page)]


def split_comment(line: str) -> tuple[str, str]:
    """``(code, comment)``: a ``#`` that starts a shell comment (after a blank, outside quotes)."""
    quote = None
    for i, char in enumerate(line):
        if quote:
            quote = None if char == quote else quote
        elif char in "'\"":
            quote = char
        elif char == "#" and (i == 0 or line[i - 1].isspace()):
            return line[:i].rstrip(), line[i:]
    return line, ""


def words(line: str) -> list[str]:
    """The command's words (shell-split, comments dropped)."""
    return shlex.split(split_comment(line)[0])


def program_of(line: str) -> str | None:
    """The ``ddpm-*`` program a line runs: directly, after variable assignments, in sbatch or torchrun."""
    found = ddpm_command(line)
    return found[0] if found else None


def ddpm_command(line: str) -> tuple[str, list[str]] | None:
    """``(program, its arguments)`` of the ``ddpm-*`` command in ``line``, if there is one."""
    argv = [w for w in words(line) if w]
    while argv and _ASSIGNMENT.match(argv[0]):
        argv = argv[1:]
    if not argv:
        return None
    if argv[0] in PROGRAMS:
        return argv[0], argv[1:]
    if argv[0] == "sbatch":
        script = next((i for i, w in enumerate(argv) if w in SCRIPTS), None)
        return (SCRIPTS[argv[script]], argv[script + 1 :]) if script is not None else None
    if argv[0] == "torchrun" and "-m" in argv:
        module = argv.index("-m") + 1
        if module < len(argv) and argv[module] in TORCHRUN_MODULES:
            return TORCHRUN_MODULES[argv[module]], argv[module + 1 :]
    return None


def shortened(line: str) -> str:
    """``line`` with :data:`SHORTEN`'s keys appended to its ``ddpm-*`` command (before any comment)."""
    found = ddpm_command(line)
    if found is None:
        return line
    program, args = found
    keys = list(SHORTEN[program])
    if program == "ddpm-train" and "hparams_search=optuna" in args:
        keys += SHORTEN_OPTUNA
    code, comment = split_comment(line)
    return " ".join([code, *keys, comment]).rstrip()


def compose_command(program: str, args: list[str], run_dir: Path):
    """Compose the config ``program args`` would run (the first job of a multirun), resolved as at
    start-up; raises what Hydra or OmegaConf would raise."""
    from hydra import compose, initialize_config_dir
    from hydra.core.global_hydra import GlobalHydra
    from hydra.core.hydra_config import HydraConfig
    from omegaconf import OmegaConf, open_dict

    from ddpm.cli.task_wrapper import check_required
    from ddpm.utils.config import config_dir

    overrides = first_job([a for a in args if a not in ("-m", "--multirun")])
    GlobalHydra.instance().clear()
    with initialize_config_dir(str(config_dir()), version_base="1.3"):
        cfg = compose(PROGRAMS[program], overrides=overrides, return_hydra_config=True)
    with open_dict(cfg):  # as Hydra's launchers do: the job's directories resolved, then its runtime
        cfg.hydra.sweep.dir = str(cfg.hydra.sweep.dir)
        cfg.hydra.run.dir = str(cfg.hydra.run.dir)
        cfg.hydra.runtime.output_dir = str(run_dir)
        cfg.hydra.runtime.cwd = str(run_dir)
        cfg.hydra.job.num = 0
    HydraConfig().set_config(cfg)
    with open_dict(cfg):
        del cfg.hydra
    check_required(cfg)
    OmegaConf.to_container(cfg, resolve=True)
    return cfg


def first_job(overrides: list[str]) -> list[str]:
    """The overrides of a sweep's first job (each sweep's first value, in Hydra's basic sweeper's order)."""
    from hydra._internal.core_plugins.basic_sweeper import BasicSweeper
    from hydra.core.override_parser.overrides_parser import OverridesParser

    parsed = OverridesParser.create().parse_overrides(overrides)
    if not any(o.is_sweep_override() for o in parsed):
        return overrides
    return list(BasicSweeper.split_arguments(parsed, None)[0][0])
