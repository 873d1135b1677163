"""Where a result came from: the command, date, machine, package versions and git commit.

Written into every results file (evaluation reports, benchmark results), so a figure quoted in the
docs can be traced to the run that produced it and rerun.
"""

from __future__ import annotations

import json
import os
import platform
import subprocess
import sys
import time
from importlib import metadata
from pathlib import Path
from typing import IO, Any

PACKAGES = ("vlserve", "torch", "open-clip-torch", "transformers", "numpy", "faiss-cpu", "tritonclient",
            "nvidia-pytriton")


def cpu_model() -> str | None:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or None


def git_commit(cwd: Path | None = None) -> str | None:
    """The checkout's HEAD, with ``-dirty`` when tracked files had uncommitted changes (None outside git)."""
    where = cwd or Path(__file__).resolve().parent
    try:
        sha = subprocess.run(["git", "rev-parse", "HEAD"], cwd=where, capture_output=True, text=True, timeout=10,
                             check=True).stdout.strip()
        # results files being rewritten by the run itself do not make the code dirty
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no", "--", ":/",
                                ":(top,exclude)benchmarks/results"], cwd=where,
                               capture_output=True, text=True, timeout=10, check=True).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return None
    return sha + ("-dirty" if dirty else "")


def versions(packages: tuple[str, ...] = PACKAGES) -> dict[str, str | None]:
    out: dict[str, str | None] = {}
    for pkg in packages:
        try:
            out[pkg] = metadata.version(pkg)
        except metadata.PackageNotFoundError:
            out[pkg] = None
    return out


def command_line(argv: list[str] | None = None) -> str:
    """The command as one would retype it: ``python path/script.py ...`` or ``vlserve ...``."""
    argv = list(sys.argv if argv is None else argv)
    if not argv:
        return ""
    if argv[0].endswith(".py"):
        return " ".join(["python", *argv])
    return " ".join([Path(argv[0]).name, *argv[1:]])


def provenance(argv: list[str] | None = None) -> dict[str, Any]:
    """Command, UTC date, git commit, machine and versions of the running process (top-level keys of a
    results file)."""
    return {"command": command_line(argv), "date": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
            "git_commit": git_commit(),
            "machine": {"platform": platform.platform(), "cpu_model": cpu_model(), "cpu_count": os.cpu_count(),
                        "python": sys.version.split()[0]},
            "versions": versions()}


def open_run_log(path: Path) -> IO[str]:
    """A JSON-lines log whose first line is ``{"run": provenance()}``, so a run stopped before its
    summary line can still be traced to its command and commit."""
    path.parent.mkdir(parents=True, exist_ok=True)
    log = path.open("w")
    log.write(json.dumps({"run": provenance()}) + "\n")
    log.flush()
    return log
