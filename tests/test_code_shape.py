"""The shape of src/ddpm: short functions, calls that name their arguments.

* every function or method body is at most ``MAX_FUNCTION_LINES`` lines (from its ``def`` line to its
  last line, decorators and docstring not counted);
* no call passes more than ``MAX_POSITIONAL_ARGS`` positional arguments (``*args`` counts as one).
"""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SRC = ROOT / "src" / "ddpm"
MAX_FUNCTION_LINES = 60
MAX_POSITIONAL_ARGS = 5


def _docstring_lines(node: ast.FunctionDef | ast.AsyncFunctionDef) -> int:
    first = node.body[0]
    value = first.value if isinstance(first, ast.Expr) else None
    if isinstance(value, ast.Constant) and isinstance(value.value, str):
        return first.end_lineno - first.lineno + 1
    return 0


def _callee(call: ast.Call) -> str:
    try:
        return ast.unparse(call.func)
    except Exception:  # pragma: no cover - unparse handles every expression ast.parse produces
        return "<call>"


def violations() -> tuple[list[str], list[str]]:
    """``(long functions, calls with too many positional arguments)``, as ``file:line name size``."""
    long_functions, positional_calls = [], []
    for path in sorted(SRC.rglob("*.py")):
        where = path.relative_to(ROOT)
        for node in ast.walk(ast.parse(path.read_text(), filename=str(where))):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                length = node.end_lineno - node.lineno + 1 - _docstring_lines(node)
                if length > MAX_FUNCTION_LINES:
                    long_functions.append(f"{where}:{node.lineno} {node.name} {length} lines")
            elif isinstance(node, ast.Call) and len(node.args) > MAX_POSITIONAL_ARGS:
                positional_calls.append(f"{where}:{node.lineno} {_callee(node)} {len(node.args)} positional")
    return long_functions, positional_calls


def test_the_scan_sees_the_package():
    assert len(list(SRC.rglob("*.py"))) > 20


def test_functions_are_short():
    long_functions, _ = violations()
    assert not long_functions, (
        f"{len(long_functions)} functions over {MAX_FUNCTION_LINES} lines (docstring excluded):\n"
        + "\n".join(long_functions)
    )


def test_calls_pass_few_positional_arguments():
    _, positional_calls = violations()
    assert not positional_calls, (
        f"{len(positional_calls)} calls with more than {MAX_POSITIONAL_ARGS} positional arguments "
        "(name them):\n" + "\n".join(positional_calls)
    )
