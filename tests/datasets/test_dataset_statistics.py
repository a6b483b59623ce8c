"""collect_statistics against numpy on a static dataset."""

from __future__ import annotations

import numpy as np

from returnn.datasets import StaticDataset
from returnn.datasets.statistics import collect_statistics


def test_statistics_match_numpy():
    rng = np.random.default_rng(0)
    seqs = [{"data": rng.normal(size=(n, 3)).astype(np.float32), "classes": rng.integers(0, 4, size=n).astype(np.int32)}
            for n in (2, 5, 7)]
    stats = collect_statistics(StaticDataset(data=seqs, output_dim={"classes": 4}))
    frames = np.concatenate([s["data"] for s in seqs]).astype(np.float64)
    classes = np.concatenate([s["classes"] for s in seqs])
    assert stats["data"]["frames"] == 14 and stats["data"]["max_len"] == 7 and stats["data"]["min_len"] == 2
    np.testing.assert_allclose(stats["data"]["mean"], frames.mean(axis=0).mean(), rtol=1e-6)
    np.testing.assert_allclose(stats["data"]["std"], frames.std(axis=0).mean(), rtol=1e-6)
    counts = np.bincount(classes, minlength=4)
    assert stats["classes"]["top_classes"][0] == (int(counts.argmax()), int(counts.max()))
    assert stats["classes"]["num_classes_seen"] == int((counts > 0).sum())
    assert collect_statistics(StaticDataset(data=seqs), max_seqs=1)["data"]["seqs"] == 1
