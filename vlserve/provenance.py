"""Where a result came from: the command, date, machine, package versions and git commit.

Written into every results file (evaluation reports, benchmark results), so a figure quoted in the
docs can be traced to the run that produced it and rerun.
"""

from __future__ import annotations

import os
import platform
import subprocess
import sys
import time
from importlib import metadata
from pathlib import Path
from typing import Any

PACKAGES = ("vlserve", "torch", "open-clip-torch", "transformers", "numpy", "faiss-cpu", "tritonclient",
            "nvidia-pytriton")


def _cpu_model() -> str | None:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or None


def git_commit(cwd: Path | None = None) -> dict[str, Any]:
    """The checkout's HEAD and whether it had uncommitted changes (None outside a git checkout)."""
    where = cwd or Path(__file__).resolve().parent
    try:
        head = subprocess.run(["git", "rev-parse", "HEAD"], cwd=where, capture_output=True, text=True, timeout=10)
        if head.returncode != 0:
            return {"commit": None, "dirty": None}
        status = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=where,
                                capture_output=True, text=True, timeout=10)
        return {"commit": head.stdout.strip(), "dirty": bool(status.stdout.strip())}
    except (OSError, subprocess.SubprocessError):
        return {"commit": None, "dirty": None}


def provenance(argv: list[str] | None = None) -> dict[str, Any]:
    """Command, UTC date, machine, versions and git commit of the running process."""
    versions: dict[str, str | None] = {}
    for pkg in PACKAGES:
        try:
            versions[pkg] = metadata.version(pkg)
        except metadata.PackageNotFoundError:
            versions[pkg] = None
    argv = list(sys.argv if argv is None else argv)
    command = " ".join([Path(argv[0]).name, *argv[1:]]) if argv else ""
    return {"command": command, "date": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
            "machine": {"platform": platform.platform(), "cpu": _cpu_model(), "cpu_count": os.cpu_count(),
                        "python": sys.version.split()[0]},
            "versions": versions, "git": git_commit()}
