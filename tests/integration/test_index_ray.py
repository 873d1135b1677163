"""The Ray runner (Ray Data on a local 2-CPU Ray) gives the same index as the local runner."""

from __future__ import annotations

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
    for key in ("count", "text_count", "unreadable", "duplicates"):
        assert local[key] == ray[key], key
    assert ray["count"] == 59 and ray["runner"] == "ray"
    a, b = ImageTextIndex.open(tmp_path / "idx", "local"), ImageTextIndex.open(tmp_path / "idx", "ray")
    for name in ("images", "texts"):
        ca, cb = getattr(a, name), getattr(b, name)
        np.testing.assert_array_equal(ca.ids(), cb.ids())
        cos = (ca.vectors(ca.ids()) * cb.vectors(cb.ids())).sum(axis=1)
        assert cos.min() >= 0.9999, (name, cos.min())
    assert a.meta.get(a.images.ids().tolist()) == b.meta.get(b.images.ids().tolist())
    a.close()
    b.close()
