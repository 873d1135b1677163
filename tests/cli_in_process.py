"""Run the ``vlserve`` CLI in this process as its entry point does (errors printed to stderr, exit codes
from the error table), for tests that read its output with pytest's ``capsys``."""

from __future__ import annotations

from typing import Any

from vlserve.cli import app
from vlserve.cli.common import run as run_cli


def vlserve(args: list[str], capsys: Any) -> tuple[int, str, str]:
    """(exit code, stdout, stderr) of ``vlserve ARGS``."""
    try:
        run_cli(app, args)
        code = 0
    except SystemExit as e:
        code = int(e.code or 0)
    out = capsys.readouterr()
    return code, out.out, out.err
