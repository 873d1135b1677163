"""``vlserve index`` as a user runs it (subprocesses): the full command set, one-line errors, and the
kill -9 crash test for resumable builds."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import sqlite3
import subprocess
import sys
import threading
import time
from pathlib import Path

import faiss
import numpy as np
import pytest
from conftest import spec_for
from PIL import Image

from vlserve.errors import InvalidInput, NotFound, mapping_of

pytestmark = pytest.mark.integration
VLSERVE = [sys.executable, "-m", "vlserve"]
ENV = {**os.environ, "HF_HUB_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false"}


def run(args: list[str], timeout: int = 180) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*VLSERVE, *args], capture_output=True, text=True, env=ENV, timeout=timeout)


def ok_json(args: list[str]) -> dict:
    r = run(args)
    assert r.returncode == 0, r.stderr[-3000:]
    return json.loads(r.stdout)


def write_images(folder: Path, n: int, start: int = 0) -> list[Path]:
    from vlserve.toyworld.dataset import sample

    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for i in range(start, start + n):
        p = folder / f"{i:04d}.jpg"
        Image.fromarray(sample("test", i).scene.image).save(p, quality=90)
        paths.append(p)
    return paths


def test_build_search_info_add_remove(tiny_dirs, tmp_path):
    spec = spec_for("open_clip_clip", tiny_dirs["open_clip_clip"])
    imgs = write_images(tmp_path / "gal", 30)
    (tmp_path / "gal" / "0003.txt").write_text("a special caption\n")
    (tmp_path / "gal" / "0003.json").write_text('{"colour": "teal"}')
    idx = ["--index-dir", str(tmp_path / "idx")]
    r = run(["index", "build", str(tmp_path / "gal"), "--model", spec, "--name", "g", "--shard-size", "8", *idx])
    assert r.returncode == 0, r.stderr
    report = json.loads(r.stdout)
    assert report["count"] == 30 and report["added"] == 30 and "img/s" in r.stderr  # progress bar with a rate
    out = ok_json(["index", "search", "g", "--text", "a red star", "--text", "a blue circle", "-k", "5", *idx])
    assert [len(x["hits"]) for x in out["results"]] == [5, 5] and out["results"][0]["hits"][0]["rank"] == 1
    top = ok_json(["index", "search", "g", "--image", str(imgs[3]), "-k", "1", *idx])["results"][0]["hits"][0]
    assert top["source"] == str(imgs[3].resolve()) and top["meta"] == {"colour": "teal"}
    assert ok_json(["index", "search", "g", "--text", "x", "--where", "colour=teal", *idx]
                   )["results"][0]["hits"][0]["id"] == top["id"]
    texts = ok_json(["index", "search", "g", "--like-id", str(top["id"]), "--target", "texts", "-k", "1", *idx])
    assert texts["results"][0]["hits"][0]["caption"] == "a special caption"
    emb = tmp_path / "q.json"
    emb.write_text(json.dumps(ok_json(["embed", "--model", spec, "--text", "a red star"])["texts"][0]["embedding"]))
    by_emb = ok_json(["index", "search", "g", "--embedding", f"@{emb}", "-k", "5", *idx])
    assert [h["id"] for h in by_emb["results"][0]["hits"]] == [h["id"] for h in out["results"][0]["hits"]]
    info = ok_json(["index", "info", "g", *idx])
    assert info["count"] == 30 and info["model_spec"] == spec and info["factory"] == "Flat"
    write_images(tmp_path / "more", 5, start=100)
    added = ok_json(["index", "add", "g", str(tmp_path / "more"), str(imgs[0]), *idx])
    assert added["added"] == 5 and added["duplicates"] == 1 and added["count"] == 35
    removed = ok_json(["index", "remove", "g", "--source", str(imgs[3]), "--id", str(by_emb["results"][0]["hits"][0]
                                                                                        ["id"]), *idx])
    assert removed["removed"] == 2 and removed["count"] == 33
    assert ok_json(["index", "list", *idx])["indexes"][0]["count"] == 33


def test_errors_are_one_line_without_traceback(tmp_path):
    (tmp_path / "t.csv").write_text("name\nx\n")
    for args, expected, error in [
        (["index", "build", str(tmp_path / "nope"), "--model", "toy", "--name", "x"], "source not found", NotFound),
        (["index", "build", str(tmp_path / "t.csv"), "--model", "toy", "--name", "x"], "no image column",
         InvalidInput),
        (["index", "search", "missing", "--text", "a", "--index-dir", str(tmp_path)], "not found", NotFound),
        (["index", "search", "missing", "--text", "a", "-k", "0"], "k must be", InvalidInput),
    ]:
        r = run(args)
        assert r.returncode == mapping_of(error).exit_code, (args, r.stderr)
        assert r.stderr.startswith("error: ") and r.stderr.count("\n") == 1 and expected in r.stderr, (args, r.stderr)
        assert "Traceback" not in r.stderr


def _index_state(folder: Path) -> tuple[list[int], np.ndarray]:
    """(item ids in the metadata database, ids in the vector store), read as a separate process would."""
    db = sqlite3.connect(folder / "meta.sqlite")
    ids = [r[0] for r in db.execute("SELECT id FROM items")]
    db.close()
    manifest = json.loads((folder / "manifest.json").read_text())
    if manifest.get("backend") == "milvus":
        from vlserve.retrieval.milvus_collection import MilvusCollection, close_client
        from vlserve.retrieval.milvus_schema import collection_name

        uri = str(folder / (manifest["uri"] or "milvus.db"))
        col = MilvusCollection("images", manifest["dim"], manifest["coarse_dims"], manifest["factory"], "", uri,
                               collection_name(manifest["name"], "images"))
        stored, vectors = col.all_vectors()
        close_client(uri)  # Milvus Lite: one process per file, and the build runs again next
        assert vectors.shape == (len(stored), manifest["dim"])
        return ids, stored
    full = faiss.read_index(str(folder / "images.full.faiss"))
    return ids, faiss.vector_to_array(full.id_map)


@pytest.mark.slow
@pytest.mark.parametrize("backend", ["faiss", "milvus"])
def test_kill_9_mid_build_then_rerun_gives_every_readable_image_once(tiny_dirs, tmp_path, backend):
    """The build blocks on a FIFO posing as image 45, so it is provably mid-build (shards before it
    committed, later ones not) when the whole process group gets SIGKILL. The rerun must finish with
    exactly the readable images, each once, in the metadata database and in the vector store (FAISS
    files, or Milvus Lite)."""
    if backend == "milvus":
        pytest.importorskip("milvus_lite")
    spec = spec_for("open_clip_clip", tiny_dirs["open_clip_clip"])
    src = tmp_path / "src"
    write_images(src, 80)
    (src / "0045.jpg").unlink()
    os.mkfifo(src / "0045.jpg")
    (src / "0077.jpg").write_bytes(b"\xff\xd8\xff\xe0 truncated")  # unreadable: counted, skipped
    cmd = [*VLSERVE, "index", "build", str(src), "--model", spec, "--name", "g", "--index-dir", str(tmp_path / "idx"),
           "--shard-size", "10", "--batch-size", "5", "--workers", "1", "--no-progress", "--backend", backend]
    proc = subprocess.Popen(cmd, env=ENV, stdout=subprocess.PIPE, stderr=subprocess.PIPE, start_new_session=True)
    db_path = tmp_path / "idx" / "g" / "meta.sqlite"
    deadline, done = time.time() + 120, 0
    while time.time() < deadline and proc.poll() is None:
        if db_path.exists():
            try:
                with sqlite3.connect(db_path, timeout=1) as db:
                    done = db.execute("SELECT COUNT(*) FROM shards").fetchone()[0]
            except sqlite3.OperationalError:
                done = 0
            if done >= 4:
                break
        time.sleep(0.05)
    assert proc.poll() is None, proc.communicate()[1][-2000:]
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait(timeout=30)
    assert proc.returncode == -signal.SIGKILL and done == 4  # shards 0-3 (images 0-39) committed
    manifest = json.loads((tmp_path / "idx" / "g" / "manifest.json").read_text())
    assert manifest["count"] == 0  # killed before the merge
    (src / "0045.jpg").unlink()
    write_images(src, 1, start=45)  # the blocked item becomes a normal image
    r = subprocess.run(cmd, env=ENV, capture_output=True, text=True, timeout=180)
    assert r.returncode == 0, r.stderr[-3000:]
    report = json.loads(r.stdout)
    assert report["shards_skipped"] == 4 and report["count"] == 79 and report["unreadable_total"] == 1
    ids, faiss_ids = _index_state(tmp_path / "idx" / "g")
    assert len(ids) == len(set(ids)) == 79 and len(faiss_ids) == len(set(faiss_ids.tolist())) == 79
    assert set(ids) == set(faiss_ids.tolist())
    r = subprocess.run(cmd, env=ENV, capture_output=True, text=True, timeout=180)
    assert r.returncode == 0, r.stderr[-3000:]
    again = json.loads(r.stdout)
    assert again["added"] == 0 and again["count"] == 79


def _feed_fifos(src: Path, images: dict[str, bytes], stop_after: int, paused: threading.Event) -> threading.Thread:
    """Each image is a FIFO that this thread fills in the reader's (sorted) order; it stops after
    ``stop_after`` images, so the build is throttled and can provably not finish."""
    for name in images:
        (src / name).unlink(missing_ok=True)
        os.mkfifo(src / name)

    def feed() -> None:
        for k, (name, data) in enumerate(sorted(images.items())):
            if k == stop_after:
                paused.set()
                return
            try:
                fd = os.open(src / name, os.O_WRONLY)  # blocks until the reader opens it
            except OSError:
                return
            try:
                os.write(fd, data)
            except BrokenPipeError:
                return
            finally:
                os.close(fd)

    t = threading.Thread(target=feed, daemon=True)
    t.start()
    return t


def _committed_items(db_path: Path) -> int:
    if not db_path.exists():
        return 0
    try:
        with sqlite3.connect(db_path, timeout=1) as db:
            return int(db.execute("SELECT COUNT(*) FROM items").fetchone()[0])
    except sqlite3.OperationalError:
        return 0


@pytest.mark.slow
def test_kill_9_at_random_moments_never_loses_or_duplicates(tiny_dirs, tmp_path):
    """Three builds, each throttled (its images arrive one by one through FIFOs and stop at a random
    point), killed with SIGKILL at a random moment after its first shard committed: every kill lands
    mid-build (0 < committed < N), and the final rerun has every image exactly once."""
    spec = spec_for("open_clip_clip", tiny_dirs["open_clip_clip"])
    src = tmp_path / "src"
    images = {p.name: p.read_bytes() for p in write_images(src, 120)}
    cmd = [*VLSERVE, "index", "build", str(src), "--model", spec, "--name", "g", "--index-dir", str(tmp_path / "idx"),
           "--shard-size", "7", "--batch-size", "4", "--workers", "1", "--no-progress"]
    db_path = tmp_path / "idx" / "g" / "meta.sqlite"
    rng = np.random.default_rng(0)
    at_kill = []
    for stop_after in sorted(rng.integers(30, 110, size=3)):
        already = _committed_items(db_path)
        paused = threading.Event()
        feeder = _feed_fifos(src, images, int(stop_after), paused)
        proc = subprocess.Popen(cmd, env=ENV, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                                start_new_session=True)
        deadline = time.time() + 120
        while time.time() < deadline and proc.poll() is None and _committed_items(db_path) <= already:
            time.sleep(0.02)
        assert proc.poll() is None, proc.communicate()[1][-2000:]
        time.sleep(rng.uniform(0, 0.5))  # a random moment: reading, encoding, writing or waiting
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(timeout=30)
        assert proc.returncode == -signal.SIGKILL
        at_kill.append(_committed_items(db_path))
        feeder.join(timeout=0)
        for name in images:  # unblock a feeder still waiting on a FIFO nobody will read
            with contextlib.suppress(OSError):
                os.close(os.open(src / name, os.O_RDONLY | os.O_NONBLOCK))
        feeder.join(timeout=10)
        assert not feeder.is_alive()
        assert already < at_kill[-1] < len(images) and at_kill[-1] <= stop_after, (already, at_kill, stop_after)
    for name, data in images.items():
        (src / name).unlink()
        (src / name).write_bytes(data)
    r = subprocess.run(cmd, env=ENV, capture_output=True, text=True, timeout=180)
    assert r.returncode == 0, r.stderr[-3000:]
    assert json.loads(r.stdout)["count"] == 120
    ids, faiss_ids = _index_state(tmp_path / "idx" / "g")
    assert sorted(ids) == sorted(set(faiss_ids.tolist())) and len(faiss_ids) == len(ids) == 120

