"""Helpers shared by the test modules (imported as ``vf_helpers``; tests/ is on sys.path)."""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from click.testing import CliRunner, Result

from vframework.cli import main


def check_clean(result: Result, code: int) -> str:
    """Assert the exit code and that nothing escaped as an exception; return all output."""
    output = result.output
    exc = result.exception
    assert exc is None or isinstance(exc, SystemExit), f"uncaught {type(exc).__name__}: {exc}\n--- output ---\n{output}"
    assert "Traceback" not in output, output
    assert result.exit_code == code, f"exit {result.exit_code}, expected {code}\n--- output ---\n{output}"
    return output


class CLI:
    """``cli(args, code=0)`` runs ``vframework ARGS`` in-process and returns its output."""

    def __init__(self) -> None:
        self.runner = CliRunner()

    def invoke(self, args: Sequence[str], env: dict[str, str | None] | None = None) -> Result:
        return self.runner.invoke(main, [str(a) for a in args], env=env, catch_exceptions=True)

    def __call__(self, args: Sequence[str], code: int = 0, env: dict[str, str | None] | None = None) -> str:
        return check_clean(self.invoke(args, env), code)


def results_left_behind(out: Path) -> list[str]:
    """Anything in ``out``'s parent that looks like (part of) the results folder ``out``."""
    if not out.parent.exists():
        return []
    return sorted(p.name for p in out.parent.iterdir() if p.name == out.name or p.name.startswith(f".{out.name}"))


def summary_of(out: Path) -> dict[str, Any]:
    return json.loads((out / "summary.json").read_text(encoding="utf-8"))
