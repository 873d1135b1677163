"""The Ray runner (Ray Data on a local 2-CPU Ray) gives the same index as the local runner, into FAISS
files and into Milvus (Milvus Lite: the workers embed, the driver writes the collection)."""

from __future__ import annotations

import importlib.util

import numpy as np
import pytest

pytestmark = [pytest.mark.integration, pytest.mark.slow]


def test_ray_runner_matches_local_runner(tmp_path):
    pytest.importorskip("ray.data")
    from test_index_toy import write_toy_gallery

    from vlserve.ingest.pipeline import BuildOptions, build
    from vlserve.models import load_dual_encoder
    from vlserve.retrieval.store import ImageTextIndex

    write_toy_gallery(tmp_path / "gal", 60)
    (tmp_path / "gal" / "images" / "test_000007.jpg").write_bytes(b"corrupt")
    source = [str(tmp_path / "gal" / "captions.csv")]
    toy = load_dual_encoder("toy")
    local = build(tmp_path / "idx", "local", source, BuildOptions(workers=1, batch_size=16, shard_size=20,
                                                                  progress=False), encoder=toy)
    ray = build(tmp_path / "idx", "ray", source, BuildOptions(runner="ray", ray_num_cpus=2, batch_size=16,
                                                              shard_size=20, progress=False), encoder=toy)
    milvus = None
    if importlib.util.find_spec("milvus_lite"):
        milvus = build(tmp_path / "idx", "ray-milvus", source,
                       BuildOptions(runner="ray", ray_num_cpus=2, batch_size=16, shard_size=20, progress=False,
                                    backend="milvus"), encoder=toy)
    for other in (ray, milvus):
        if other is None:
            continue
        for key in ("count", "text_count", "unreadable", "duplicates"):
            assert local[key] == other[key], key
        assert other["count"] == 59 and other["runner"] == "ray"
    a = ImageTextIndex.open(tmp_path / "idx", "local")
    for name in ("ray", "ray-milvus") if milvus else ("ray",):
        b = ImageTextIndex.open(tmp_path / "idx", name)
        for kind in ("images", "texts"):
            ca, cb = getattr(a, kind), getattr(b, kind)
            np.testing.assert_array_equal(ca.ids(), cb.ids())
            cos = (ca.vectors(ca.ids()) * cb.vectors(cb.ids())).sum(axis=1)
            assert cos.min() >= 0.9999, (name, kind, cos.min())
        assert a.meta.get(a.images.ids().tolist()) == b.meta.get(b.images.ids().tolist())
        b.close()
    a.close()
