"""The docs are tests: every command README.md and docs/*.md show runs as written (tests/docs/doc_commands.py
says how each block is checked). The fast checks (marks, composition, links) run in the default suite; running
the pages from a clean copy of the repository is the ``docs`` suite (``python -m pytest -m docs``)."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.docs.doc_commands import (
    MODES,
    PAGES,
    PROGRAMS,
    REPO_ROOT,
    Block,
    all_blocks,
    compose_command,
    ddpm_command,
    parse_page,
    shortened,
)

BLOCKS = all_blocks()
_LINK = re.compile(r"\]\(([^)#\s]+)(#[^)\s]*)?\)")


def _ids(blocks: list[Block]) -> list[str]:
    return [block.where for block in blocks]


def test_every_block_says_how_it_is_checked():
    assert len(BLOCKS) > 30
    for block in BLOCKS:
        assert block.mode in MODES, f"{block.where}: unknown check {block.mode!r} (one of {MODES})"
        if block.mode == "error":
            assert block.arg, f"{block.where}: an error check names the text of its error line"
        if block.mode in ("skip", "ci"):
            runs = [ln for ln in block.lines() for part in ln.split("&&") if ddpm_command(part)]
            assert block.mode == "ci" or not runs, f"{block.where}: a skipped block hides ddpm commands"
        if block.lang == "bash":
            for line in block.lines():
                if ddpm_command(line):
                    assert not re.search(r"[|;]|&&|<[a-z]|\.\.\.", line.split("#")[0]), (
                        f"{block.where}: a ddpm command is one plain command, no placeholders: {line}"
                    )


def test_the_readme_set_up_commands_are_what_ci_runs():
    ci = (REPO_ROOT / ".ci" / "run").read_text()
    for block in (b for b in BLOCKS if b.mode == "ci"):
        for line in block.lines():
            assert line in ci, f"{block.where}: .ci/run does not run {line!r}"


def test_the_cluster_commands_are_the_ones_the_slurm_tests_run():
    from tests.slurm.documented import DOCUMENTED

    shown = [line for block in BLOCKS if block.mode == "slurm" for line in block.lines()]
    assert shown and sorted(shown) == sorted(DOCUMENTED)


def test_every_link_between_pages_resolves():
    for page in PAGES:
        text = (REPO_ROOT / page).read_text()
        for target, _ in _LINK.findall(text):
            if target.startswith("http"):
                continue
            assert (REPO_ROOT / page).parent.joinpath(target).exists(), f"{page}: broken link {target}"


def test_the_readme_is_a_newcomers_page():
    readme = (REPO_ROOT / "README.md").read_text()
    assert len(readme.splitlines()) <= 160
    assert {f"docs/{Path(p).name}" for p in PAGES[1:]} <= set(re.findall(r"\((docs/[\w.]+)\)", readme))


COMPOSED = [b for b in BLOCKS if b.mode in ("compose", "run") and b.lang == "bash"]


@pytest.mark.parametrize("block", COMPOSED, ids=_ids(COMPOSED))
def test_every_ddpm_command_composes(block, tmp_path):
    for line in block.lines():
        found = ddpm_command(line)
        if found is not None:
            program, args = found
            compose_command(program, args, tmp_path)


# ------------------------------------------------------------------ running the pages
def _clean_copy(dest: Path) -> Path:
    """The repository as a fresh clone has it: tracked and unignored files, nothing generated."""
    listed = subprocess.run(
        ["git", "ls-files", "-co", "--exclude-standard", "-z"], cwd=REPO_ROOT, capture_output=True, check=True
    ).stdout.decode()
    for name in filter(None, listed.split("\0")):
        source = REPO_ROOT / name
        if source.is_file():
            (dest / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, dest / name)
    return dest


def _environment(clone: Path) -> dict[str, str]:
    """A user's shell on a fresh CPU machine without internet: no GPU, no cached Inception weights, no W&B
    settings (a command that logs to W&B says WANDB_MODE=offline itself)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("WANDB_", "DDPM_", "PYTEST"))}
    bin_dir = str(Path(sys.executable).parent)
    env.update(
        PATH=os.pathsep.join([bin_dir, env.get("PATH", "")]),
        CUDA_VISIBLE_DEVICES="",
        TORCH_HOME=str(clone / ".torch-home"),
        HTTPS_PROXY="http://127.0.0.1:9",  # nothing listens there: a download fails at once
        HTTP_PROXY="http://127.0.0.1:9",
        OMP_NUM_THREADS="1",
        PYTHONUNBUFFERED="1",
    )
    return env


def _bash(script: str, clone: Path, timeout: int = 900) -> subprocess.CompletedProcess:
    return subprocess.run(
        ["bash", "-euo", "pipefail", "-c", script],
        cwd=clone,
        env=_environment(clone),
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def _check_block(block: Block, clone: Path) -> None:
    if block.lang == "python":
        script = clone / ".doc-snippet.py"
        script.write_text(block.text)
        done = _bash(f"python {script.name}", clone)
        assert done.returncode == 0, f"{block.where}:\n{done.stderr[-4000:]}"
        return
    for line in block.lines():
        if block.mode == "error":
            done = _bash(line, clone)
            errors = [ln for ln in done.stderr.splitlines() if ln.startswith("error:")]
            assert done.returncode == 2 and len(errors) == 1, f"{block.where}: {line}\n{done.stderr[-3000:]}"
            assert block.arg in errors[0], f"{block.where}: {line}\n{errors[0]}"
            continue
        parts = [p.strip() for p in line.split("&&")] if block.mode == "ci" else [line]
        for part in parts:
            if block.mode == "ci" and not ddpm_command(part):
                continue  # the install and the test suite: .ci/run runs them
            done = _bash(shortened(part), clone)
            assert done.returncode == 0, f"{block.where}: {shortened(part)}\n{done.stderr[-4000:]}"


@pytest.fixture(scope="module")
def clone(tmp_path_factory):
    return _clean_copy(tmp_path_factory.mktemp("clone"))


@pytest.mark.docs
@pytest.mark.parametrize("page", PAGES)
def test_the_page_runs_as_written(page, clone):
    checked = [b for b in parse_page(page) if b.mode in ("run", "error", "ci")]
    for block in checked:
        _check_block(block, clone)


def test_programs_cover_the_entry_points():
    scripts = (REPO_ROOT / "pyproject.toml").read_text()
    assert all(f'{name} = "ddpm.cli.' in scripts for name in PROGRAMS)
