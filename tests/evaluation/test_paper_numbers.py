"""The docs' tables of published numbers show the one table in ``ddpm.evaluation.paper_numbers``."""

from ddpm.evaluation.paper_numbers import PAPER, TABLE2
from tests.helpers import REPO_ROOT as ROOT

PAGES = (ROOT / "README.md").read_text() + (ROOT / "docs" / "samplers.md").read_text()


def _row(first_cell: str) -> str:
    rows = [line for line in PAGES.splitlines() if line.startswith(f"| {first_cell} |")]
    assert rows, f"no row starting with {first_cell} in README.md or docs/samplers.md"
    return rows[0]


def test_readme_table2_rows_show_the_papers_numbers():
    for cell, numbers in TABLE2.items():
        row = _row(f"`{cell}`")
        if numbers:
            assert f"{numbers['is']:.2f} ± {numbers['is_std']:.2f}" in row and f"{numbers['fid']:.2f}" in row
        else:
            assert "unstable to train" in row


def test_readme_results_show_the_papers_numbers():
    cifar = _row("CIFAR-10 32x32")
    assert all(
        f"{PAPER['cifar10'][k]:g}" in cifar for k in ("fid_50k_train", "is_50k_10splits", "nll_bpd_test")
    )
    assert f"{PAPER['lsun_church']['fid_50k_train']:g}" in _row("LSUN Church 256")
    assert f"{PAPER['lsun_bedroom']['fid_50k_train']:.2f}" in _row("LSUN Bedroom 256")
