"""Readers: folders with sidecars, CSV/TSV/parquet tables, webdataset tars, and their clear errors."""

from __future__ import annotations

import io
import json
import tarfile
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from vlserve.errors import InvalidInput, NotFound, Unsupported
from vlserve.ingest.reader import read_bytes, read_source
from vlserve.ingest.shards import plan_shards


def jpeg(value: int) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(np.full((8, 8, 3), value, np.uint8)).save(buf, format="JPEG")
    return buf.getvalue()


def test_folder_is_recursive_sorted_with_sidecars(tmp_path):
    (tmp_path / "b" / "deep").mkdir(parents=True)
    (tmp_path / "a.jpg").write_bytes(jpeg(1))
    (tmp_path / "a.txt").write_text("first caption\n\nsecond caption\n")
    (tmp_path / "a.json").write_text('{"colour": "red", "n": 3}')
    (tmp_path / "b" / "deep" / "c.PNG").write_bytes(jpeg(2))
    (tmp_path / "b" / "readme.md").write_text("ignored")
    (tmp_path / ".hidden").mkdir()
    (tmp_path / ".hidden" / "x.jpg").write_bytes(jpeg(3))
    items = read_source(tmp_path)
    assert [Path(i.key).name for i in items] == ["a.jpg", "c.PNG"]
    assert items[0].captions == ("first caption", "second caption") and items[0].meta == {"colour": "red", "n": 3}
    assert read_bytes(items[1]) == jpeg(2)


def test_csv_groups_rows_resolves_relative_paths_and_keeps_metadata(tmp_path):
    (tmp_path / "img").mkdir()
    (tmp_path / "img" / "x.jpg").write_bytes(jpeg(1))
    (tmp_path / "list.csv").write_text("filepath,text,split\nimg/x.jpg,a cat,train\nimg/x.jpg,a pet,train\n"
                                       "img/missing.jpg,gone,test\n")
    items = read_source(tmp_path / "list.csv")
    assert len(items) == 2 and items[0].captions == ("a cat", "a pet") and items[0].meta == {"split": "train"}
    assert items[0].key == str((tmp_path / "img" / "x.jpg").resolve())
    with pytest.raises(InvalidInput, match="cannot read"):  # counted as unreadable by the pipeline
        read_bytes(items[1])


def test_csv_without_an_image_column_is_a_clear_error(tmp_path):
    (tmp_path / "t.csv").write_text("name,caption\nx,y\n")
    with pytest.raises(InvalidInput, match=r"no image column \(looked for image.*columns: name, caption"):
        read_source(tmp_path / "t.csv")
    with pytest.raises(InvalidInput, match="no column 'pic'"):
        read_source(tmp_path / "t.csv", image_col="pic")
    (tmp_path / "empty.csv").write_text("image,caption\n")
    with pytest.raises(InvalidInput, match="no images found"):
        read_source(tmp_path / "empty.csv")


def test_missing_path_and_empty_folder(tmp_path):
    with pytest.raises(NotFound, match="source not found"):
        read_source(tmp_path / "nope")
    (tmp_path / "docs").mkdir()
    (tmp_path / "docs" / "a.txt").write_text("x")
    with pytest.raises(InvalidInput, match="no images found"):
        read_source(tmp_path / "docs")
    with pytest.raises(NotFound, match="nothing matches"):
        read_source(str(tmp_path / "*.tar"))


def write_tar(path: Path, samples: dict[str, dict[str, bytes]]) -> None:
    with tarfile.open(path, "w") as tf:
        for key, parts in samples.items():
            for ext, data in parts.items():
                info = tarfile.TarInfo(f"{key}.{ext}")
                info.size = len(data)
                tf.addfile(info, io.BytesIO(data))


def test_webdataset_tars_by_file_range_glob_and_folder(tmp_path):
    d = tmp_path / "wds"
    d.mkdir()
    write_tar(d / "shard-000.tar", {"s/0001": {"jpg": jpeg(1), "txt": b"one", "json": b'{"k": 1}'},
                                    "s/0002": {"png": jpeg(2)}, "s/0003": {"txt": b"no image"}})
    write_tar(d / "shard-001.tar", {"s/0004": {"jpg": jpeg(4), "txt": b"four"}})
    one = read_source(d / "shard-000.tar")
    assert len(one) == 2 and one[0].captions == ("one",) and one[0].meta == {"k": 1}
    assert read_bytes(one[0]) == jpeg(1) and read_bytes(one[1]) == jpeg(2)
    assert len(read_source(str(d / "shard-{000..001}.tar"))) == 3
    assert len(read_source(str(d / "shard-*.tar"))) == 3
    assert len(read_source(d)) == 3  # a folder holding only tars is a webdataset
    with pytest.raises(NotFound, match=r"shard-002\.tar"):
        read_source(str(d / "shard-{000..002}.tar"))
    (tmp_path / "x.tar.gz").write_bytes(b"")
    with pytest.raises(Unsupported, match="compressed tars"):
        read_source(tmp_path / "x.tar.gz")


def test_parquet_table(tmp_path):
    pa = pytest.importorskip("pyarrow")
    import pyarrow.parquet as pq

    (tmp_path / "a.jpg").write_bytes(jpeg(1))
    pq.write_table(pa.table({"image": ["a.jpg"], "caption": ["hello"], "score": [0.5]}), tmp_path / "t.parquet")
    items = read_source(tmp_path / "t.parquet")
    assert items[0].captions == ("hello",) and items[0].meta == {"score": 0.5}


def test_shard_keys_change_only_where_the_source_changed(tmp_path):
    for i in range(6):
        (tmp_path / f"{i}.jpg").write_bytes(jpeg(i))
    before = plan_shards(read_source(tmp_path), 2)
    (tmp_path / "5.jpg").write_bytes(jpeg(50))
    after = plan_shards(read_source(tmp_path), 2)
    assert [p.key for p in before[:2]] == [p.key for p in after[:2]] and before[2].key != after[2].key
    assert json.dumps([len(p.items) for p in after]) == "[2, 2, 2]"
