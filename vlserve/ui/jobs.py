"""Server-side index jobs the Index tab starts: ``vlserve index build`` / ``remove`` as child processes
(the same commands an operator types, so the UI process never loads a model), with the build's
progress read from its progress bar."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from vlserve.ui.gateway_api import GatewayError

_PROGRESS = re.compile(r"(\d+)/(\d+)")
NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")


def _command(*args: str) -> list[str]:
    return [sys.executable, "-m", "vlserve", "index", *args]


def check_name(name: str) -> str:
    name = (name or "").strip()
    if not NAME.match(name):
        raise GatewayError(f"Index name {name!r}: use letters, digits, '.', '_' or '-' (at most 64, no spaces).")
    return name


def build(index_dir: Path, name: str, source: str, model: str | None) -> Iterator[tuple[float | None, str]]:
    """Run ``vlserve index build``; yield (fraction done or None, a status line) as it goes, and finally
    (1.0, the report). A failure raises :class:`GatewayError` with the command's own message."""
    name = check_name(name)
    source = (source or "").strip()
    if not source:
        raise GatewayError("No source: give a server-side folder of images (or a CSV of image,caption).")
    if not Path(source).exists() and "{" not in source and "*" not in source:
        raise GatewayError(f"No such folder or file on the server: {source}")
    args = ["build", source, "--name", name, "--index-dir", str(index_dir), "--progress"]
    if model:
        args += ["--model", model]
    proc = subprocess.Popen(_command(*args), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=False)
    assert proc.stderr is not None and proc.stdout is not None
    tail = b""
    while True:
        chunk = proc.stderr.read1(4096) if hasattr(proc.stderr, "read1") else proc.stderr.read(4096)
        if not chunk:
            break
        tail = (tail + chunk)[-4096:]
        pieces = re.split(rb"[\r\n]", tail)
        for piece in reversed(pieces):
            m = _PROGRESS.search(piece.decode(errors="replace"))
            if m and int(m.group(2)) > 0:
                done, total = int(m.group(1)), int(m.group(2))
                yield done / total, f"embedding: {done} / {total}"
                break
    out = proc.stdout.read().decode(errors="replace")
    code = proc.wait()
    if code != 0:
        raise GatewayError(f"vlserve index build failed (exit code {code}): {last_message(tail)}")
    yield 1.0, out.strip().splitlines()[-1] if out.strip() else "done"


def remove(index_dir: Path, name: str, ids: list[int]) -> dict[str, Any]:
    name = check_name(name)
    if not ids:
        raise GatewayError("No ids: give the ids of the items to remove (comma separated).")
    args = ["remove", name, "--index-dir", str(index_dir)]
    for i in ids:
        args += ["--id", str(i)]
    done = subprocess.run(_command(*args), capture_output=True, timeout=600)
    if done.returncode != 0:
        raise GatewayError(f"vlserve index remove failed (exit code {done.returncode}): "
                           f"{last_message(done.stderr)}")
    text = done.stdout.decode(errors="replace").strip()
    try:
        return dict(json.loads(text.splitlines()[-1]))
    except (ValueError, IndexError):
        return {"output": text}


def last_message(stderr: bytes) -> str:
    """The CLI's error line (the JSON ``error`` object's message when it printed one)."""
    lines = [ln for ln in re.split(r"[\r\n]", stderr.decode(errors="replace")) if ln.strip()]
    for line in reversed(lines):
        try:
            body = json.loads(line)
        except ValueError:
            continue
        if isinstance(body, dict) and isinstance(body.get("error"), dict):
            return str(body["error"].get("message", line))
    return lines[-1].removeprefix("error: ") if lines else "no message"
