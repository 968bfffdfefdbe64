"""The progress-bar helper: nested below an open bar on a terminal, on its own line elsewhere."""

import sys

from tqdm import tqdm

from ddpm.utils.progress import is_terminal, progress_bar


def test_a_bar_below_another_writes_no_cursor_escapes_outside_a_terminal(capsys):
    assert not is_terminal()  # pytest captures stderr: a pipe, as in CI
    with tqdm(total=5, file=sys.stderr, desc="outer"):
        for _ in progress_bar(range(3), description="inner"):
            pass
    err = capsys.readouterr().err
    assert "inner" in err and "\x1b[" not in err
