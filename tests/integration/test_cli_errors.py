"""Every error type reaches the CLI as its documented exit code and a one-line message: the error
path of ``vlserve`` for each row of the table, and real commands that hit each kind they can."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import numpy as np
import pytest
import typer
from conftest import spec_for
from PIL import Image

from vlserve.cli import app
from vlserve.cli.common import run as run_cli
from vlserve.errors import (
    ERROR_TABLE,
    IndexBusy,
    IndexModelMismatch,
    InvalidInput,
    ModelUnavailable,
    NotFound,
    UnknownModelSpec,
    Unsupported,
    VLServeError,
    mapping_of,
)

pytestmark = pytest.mark.integration


@pytest.mark.parametrize("cls", list(ERROR_TABLE), ids=lambda c: c.__name__)
def test_each_error_type_exits_with_its_code_and_one_line(cls, capsys):
    raising = typer.Typer()

    @raising.command()
    def fail(where: int = 0) -> None:
        raise cls.rebuild(f"{cls.__name__} happened", item=where, field="image")

    with pytest.raises(SystemExit) as stopped:
        run_cli(raising, ["--where", "4"])
    assert stopped.value.code == ERROR_TABLE[cls].exit_code
    assert capsys.readouterr().err == f"error: image 4: {cls.__name__} happened\n"


def test_help_lists_the_exit_codes(capsys):
    with pytest.raises(SystemExit):
        run_cli(app, ["--help"])
    out = " ".join(capsys.readouterr().out.split())
    for cls, m in ERROR_TABLE.items():
        assert f"{m.exit_code} {cls.code}" in out


def vlserve(*args: str, cwd=None) -> subprocess.CompletedProcess:
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    return subprocess.run([sys.executable, "-m", "vlserve", *args], capture_output=True, text=True, env=env,
                          timeout=300, cwd=cwd)


@pytest.fixture(scope="module")
def index(tiny_dirs, tmp_path_factory):
    """A 32-d index of four plain images, built through the library (the CLI path is tested elsewhere)."""
    from vlserve.ingest.pipeline import BuildOptions, build

    root = tmp_path_factory.mktemp("cli-errors")
    sources = []
    for i in range(4):
        sources.append(str(root / f"{i}.png"))
        Image.fromarray(np.full((16, 16, 3), i * 60, np.uint8)).save(sources[-1])
    spec = spec_for("open_clip_clip", tiny_dirs["open_clip_clip"])
    build(root / "idx", "g", sources, BuildOptions(workers=0, progress=False), model=spec)
    return root, spec


def test_real_commands_exit_with_the_code_of_their_error(index, tmp_path):
    root, spec = index
    idx = ["--index-dir", str(root / "idx")]
    img = str(root / "0.png")
    cases: list[tuple[type[VLServeError], list[str], str]] = [
        (InvalidInput, ["embed", "--model", spec, "--text", "a", "--dimensions", "999"], "dimensions must be"),
        (UnknownModelSpec, ["embed", "--model", "nope:x", "--text", "a"], "unknown scheme 'nope'"),
        (NotFound, ["index", "info", "missing", *idx], "not found"),
        (Unsupported, ["classify", img, "--model", spec, "--labels", "a,b", "--multi-label"], "SigLIP"),
        (IndexModelMismatch, ["index", "search", "g", "--embedding", json.dumps([0.5] * 16), *idx],
         "16 dimensions; index 'g' holds 32"),
        (ModelUnavailable, ["embed", "--model", f"hf:{tmp_path / 'no-such-model'}", "--text", "a"],
         "cannot load weights"),
    ]
    for cls, args, message in cases:
        r = vlserve(*args)
        assert r.returncode == mapping_of(cls).exit_code, (cls, r.stderr)
        assert r.stderr.startswith("error: ") and r.stderr.count("\n") == 1 and message in r.stderr, r.stderr


def test_a_busy_index_exits_with_its_code(index):
    from vlserve.retrieval.fsutil import writer_lock

    root, _ = index
    with writer_lock(root / "idx" / "g"):
        r = vlserve("index", "remove", "g", "--id", "1", "--index-dir", str(root / "idx"))
    assert r.returncode == mapping_of(IndexBusy).exit_code and "being written by another process" in r.stderr
    assert r.stderr.count("\n") == 1
