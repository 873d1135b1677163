"""``vlserve index`` bad inputs give one clear error each (in-process through typer; the subprocess
path, ``error: ...`` and the exit code of each error type, is covered in tests/integration/test_index_cli.py)."""

from __future__ import annotations

import numpy as np
import pytest
from conftest import spec_for
from PIL import Image
from typer.testing import CliRunner

from vlserve.cli.index import index_app
from vlserve.errors import VLServeError


@pytest.fixture(scope="module")
def built(tiny_dirs, tmp_path_factory):
    root = tmp_path_factory.mktemp("cli")
    (root / "imgs").mkdir()
    for i in range(6):
        Image.fromarray(np.full((16, 16, 3), i * 40, np.uint8)).save(root / "imgs" / f"{i}.png")
    spec = spec_for("open_clip_clip", tiny_dirs["open_clip_clip"])
    r = CliRunner().invoke(index_app, ["build", str(root / "imgs"), "--model", spec, "--name", "g",
                                       "--index-dir", str(root / "idx"), "--no-progress", "--workers", "0"])
    assert r.exit_code == 0, r.output
    return root, spec


def error_of(args: list[str]) -> str:
    r = CliRunner().invoke(index_app, args)
    assert isinstance(r.exception, VLServeError), (r.exception, r.output)
    return r.exception.message


def test_bad_inputs_are_clear_errors(built, tmp_path):
    root, spec = built
    idx = ["--index-dir", str(root / "idx")]
    (tmp_path / "empty").mkdir()
    (tmp_path / "t.csv").write_text("name,caption\na,b\n")
    cases = [
        (["build", str(tmp_path / "empty"), "--model", spec, "--name", "x", *idx], "no images found"),
        (["build", str(tmp_path / "missing"), "--model", spec, "--name", "x", *idx], "source not found"),
        (["build", str(tmp_path / "t.csv"), "--model", spec, "--name", "x", *idx], "no image column"),
        (["build", str(root / "imgs"), "--name", "new", *idx], "give --model SPEC"),
        (["build", str(root / "imgs"), "--model", spec, "--name", "x", "--runner", "spark", *idx], "--runner"),
        (["build", str(root / "imgs"), "--model", spec, "--name", "x", "--factory", "Bogus9", *idx],
         "invalid FAISS factory"),
        (["search", "missing", "--text", "a", *idx], "index 'missing' not found"),
        (["search", "g", "--text", "a", "-k", "0", *idx], "k must be an integer in 1..10000"),
        (["search", "g", "--text", "a", "-k", "10001", *idx], "k must be an integer in 1..10000"),
        (["search", "g", *idx], "exactly one kind of query"),
        (["search", "g", "--embedding", "[1, 2]", *idx], "2 dimensions; index 'g' holds 32"),
        (["search", "g", "--embedding", "not json", *idx], "JSON list"),
        (["search", "g", "--image", str(tmp_path / "nope.jpg"), *idx], "image file not found"),
        (["search", "g", "--text", "a", "--where", "???", *idx], "filter"),
        (["search", "g", "--like-id", "12345", *idx], "no item with id 12345"),
        (["search", "g", "--text", "a", "--target", "texts", *idx], "no captions indexed"),
        (["remove", "g", *idx], "nothing to remove"),
        (["add", "missing", str(root / "imgs"), *idx], "index 'missing' not found"),
        (["info", "missing", *idx], "not found"),
    ]
    for args, expected in cases:
        assert expected in error_of(args), args


def test_corrupt_query_image_names_the_file(built, tmp_path):
    root, _ = built
    bad = tmp_path / "bad.jpg"
    bad.write_bytes(b"\xff\xd8\xff garbage")
    msg = error_of(["search", "g", "--image", str(bad), "--index-dir", str(root / "idx")])
    assert msg.startswith(f"{bad}: ")
