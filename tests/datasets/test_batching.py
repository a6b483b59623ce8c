"""BatchGenerator: RETURNN's batch limits, completeness, padding, reproducible orders, prefetch thread."""

from __future__ import annotations

import gc
import threading
import time

import numpy as np
import pytest

from returnn.datasets import BatchGenerator, StaticDataset, batch_generator_from_config, init_dataset
from returnn.datasets.batching import Prefetcher
from returnn.errors import DatasetError


def _random_dataset(num_seqs: int = 40, seed: int = 0, **kwargs) -> StaticDataset:
    rng = np.random.default_rng(seed)
    seqs = []
    for i in range(num_seqs):
        t, n = int(rng.integers(1, 30)), int(rng.integers(1, 12))
        seqs.append({"data": rng.normal(size=(t, 3)).astype(np.float32),
                     "classes": rng.integers(0, 7, size=n).astype(np.int32), "seq_tag": f"s{i}"})
    return StaticDataset(data=seqs, output_dim={"classes": 7}, **kwargs)


def _collect(batches) -> dict[str, dict[str, list]]:
    """{tag: {key: [frames in order of appearance]}} from the batches, using the seq lengths."""
    seen: dict[str, dict[str, list]] = {}
    for batch in batches:
        for b, tag in enumerate(batch.seq_tags):
            for key in batch.keys():
                n = batch.seq_lens[key][b]
                seen.setdefault(tag, {}).setdefault(key, []).append(batch.data[key][b, :n])
    return seen


@pytest.mark.parametrize("prefetch", [0, 3])
@pytest.mark.parametrize("batch_size,max_seqs", [(1, -1), (50, 4), (200, 100), (10**6, 7)])
def test_every_frame_appears_exactly_once(prefetch, batch_size, max_seqs):
    ds = _random_dataset()
    seen = _collect(BatchGenerator(ds, batch_size=batch_size, max_seqs=max_seqs, epoch=1, prefetch=prefetch))
    ds.init_seq_order(epoch=1)
    assert sorted(seen) == sorted(ds.get_tag(i) for i in range(ds.num_seqs))
    for i in range(ds.num_seqs):
        for key in ("data", "classes"):
            (frames,) = seen[ds.get_tag(i)][key]
            np.testing.assert_array_equal(frames, ds.get_data(i, key))


def _greedy_reference(lens: list[dict], batch_size: int, max_seqs: int) -> list[list[int]]:
    """Plain re-statement of RETURNN's rule: add while max_len * n <= batch_size and n <= max_seqs."""
    batches, cur = [], []
    for i, seq_lens in enumerate(lens):
        cand = cur + [i]
        frames = max(max(lens[j][k] for j in cand) * len(cand) for k in seq_lens)
        if cur and (frames > batch_size or len(cand) > max_seqs):
            batches.append(cur)
            cand = [i]
        cur = cand
    return batches + ([cur] if cur else [])


@pytest.mark.parametrize("batch_size,max_seqs", [(30, 3), (64, 10), (100, 5)])
def test_batches_respect_limits_and_match_greedy_reference(batch_size, max_seqs):
    ds = _random_dataset(seed=3, seq_ordering="random")
    batches = list(BatchGenerator(ds, batch_size=batch_size, max_seqs=max_seqs, epoch=2, prefetch=0))
    ds.init_seq_order(epoch=2)
    lens = [ds.get_seq_length(i) for i in range(ds.num_seqs)]
    assert [list(b.seq_idx) for b in batches] == _greedy_reference(lens, batch_size, max_seqs)
    for b in batches:
        assert b.num_seqs <= max_seqs
        padded = max(b.data[k].shape[1] * b.num_seqs for k in b.keys())
        assert padded <= batch_size or b.num_seqs == 1


def test_batch_is_padded_with_zeros_and_masked():
    ds = _random_dataset(num_seqs=6)
    batch = next(iter(BatchGenerator(ds, batch_size=10**6, max_seqs=6, epoch=1, prefetch=0)))
    assert batch.data["data"].shape == (6, batch.seq_lens["data"].max(), 3)
    assert batch.data["classes"].shape == (6, batch.seq_lens["classes"].max())
    assert batch.seq_lens["data"].dtype == np.int32 and batch.data["classes"].dtype == np.int32
    mask = batch.mask("data")
    assert (batch.data["data"][~mask] == 0).all()
    assert batch.num_frames("data") == int(mask.sum())


def test_max_seq_length_int_negative_and_dict():
    ds = _random_dataset(seed=4)
    ds.init_seq_order(epoch=1)
    lens = [ds.get_seq_length(i) for i in range(ds.num_seqs)]

    def kept(limit) -> list[str]:
        return sorted(_collect(BatchGenerator(ds, batch_size=100, max_seqs=5, max_seq_length=limit, epoch=1, prefetch=0)))

    def tags(pred) -> list[str]:
        return sorted(ds.get_tag(i) for i, n in enumerate(lens) if pred(n))

    assert kept(15) == tags(lambda n: max(n.values()) <= 15)
    assert kept(-5) == tags(lambda n: n["classes"] <= 5)
    assert kept({"data": 20, "classes": 8}) == tags(lambda n: n["data"] <= 20 and n["classes"] <= 8)
    assert kept(None) == tags(lambda n: True)


def test_chunked_batches_contain_chunks_of_every_sequence():
    seqs = [{"data": np.arange(n, dtype=np.float32)[:, None], "classes": np.arange(n, dtype=np.int32)}
            for n in (10, 3, 7)]
    ds = StaticDataset(data=seqs)
    batches = list(BatchGenerator(ds, batch_size=8, max_seqs=100, chunking="4:2", epoch=1, prefetch=0))
    starts = [(int(b.seq_idx[j]), int(b.chunk_start["data"][j])) for b in batches for j in range(b.num_seqs)]
    assert starts == [(0, 0), (0, 2), (0, 4), (0, 6), (0, 8), (1, 0), (1, 2), (2, 0), (2, 2), (2, 4), (2, 6)]
    for b in batches:
        assert b.data["data"].shape[1] * b.num_seqs <= 8
        for j in range(b.num_seqs):
            n, s = b.seq_lens["classes"][j], b.chunk_start["classes"][j]
            np.testing.assert_array_equal(b.data["classes"][j, :n], np.arange(s, s + n))


def test_orders_are_reproducible_and_differ_between_epochs():
    def tags(epoch: int, **kwargs) -> list[list[str]]:
        ds = _random_dataset(seq_ordering="random")
        return [b.seq_tags for b in BatchGenerator(ds, batch_size=60, max_seqs=4, epoch=epoch, **kwargs)]

    assert tags(1) == tags(1)
    ds = _random_dataset(seq_ordering="random")
    gen = BatchGenerator(ds, batch_size=60, max_seqs=4, epoch=1)
    assert ds.num_seqs == 40 and ds.epoch == 1
    assert [b.seq_tags for b in gen] == [b.seq_tags for b in gen] == tags(1)
    assert tags(1) != tags(2)
    shuffled = tags(3, shuffle_batches=True)
    assert shuffled == tags(3, shuffle_batches=True)
    assert shuffled != tags(3) and sorted(map(tuple, shuffled)) == sorted(map(tuple, tags(3)))


class _FailingDataset(StaticDataset):
    """Fails when loading sequence 5."""

    def _load_corpus_seq(self, corpus_idx: int) -> dict:
        if corpus_idx == 5:
            raise DatasetError("broken sequence 5")
        return super()._load_corpus_seq(corpus_idx)

    def _corpus_seq_lens(self, corpus_idx: int) -> dict:
        return {"data": 1, "classes": 1}


def _prefetch_threads() -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name == "returnn-batch-prefetch" and t.is_alive()]


def test_prefetch_reraises_producer_error_in_consumer():
    ds = _FailingDataset(data=[{"data": np.zeros((1, 2), np.float32), "classes": np.zeros(1, np.int32)}] * 10)
    got = []
    with pytest.raises(DatasetError, match="broken sequence 5"):
        for batch in BatchGenerator(ds, batch_size=1, epoch=1, prefetch=2):
            got.append(batch)
    assert len(got) == 5
    assert not _prefetch_threads()


def test_prefetch_stops_when_consumer_stops_early():
    ds = _random_dataset(num_seqs=40)
    gen = BatchGenerator(ds, batch_size=1, epoch=1, prefetch=2)
    for _ in gen:
        break
    gc.collect()
    deadline = time.monotonic() + 5
    while _prefetch_threads() and time.monotonic() < deadline:
        time.sleep(0.01)
    assert not _prefetch_threads()
    with BatchGenerator(ds, batch_size=1, epoch=1, prefetch=2) as gen2:
        it = iter(gen2)
        next(it)
    assert not _prefetch_threads()


def test_prefetcher_is_bounded():
    produced = []

    def source():
        for i in range(100):
            produced.append(i)
            yield i

    pre = Prefetcher(source(), size=3)
    time.sleep(0.2)
    assert len(produced) <= 5
    assert list(pre) == list(range(100))
    assert not pre.alive


def test_batch_generator_from_config_reads_keys_and_chunks_only_in_training():
    ds = init_dataset({"class": "CopyTaskDataset", "num_seqs": 30, "minlen": 1, "maxlen": 20})
    config = {"batch_size": 40, "max_seqs": 3, "chunking": "5:5", "max_seq_length": {"classes": 9}}
    train = batch_generator_from_config(ds, config, epoch=1, train=True)
    assert (train.batch_size, train.max_seqs, train.chunking, train.max_seq_length) == (40, 3, (5, 5), {"classes": 9})
    dev = batch_generator_from_config(ds, config, epoch=1, train=False)
    assert dev.chunking is None
    for batch in train:
        assert batch.data["data"].shape[1] <= 5 and batch.num_seqs <= 3
        np.testing.assert_array_equal(batch.data["data"], batch.data["classes"])


def test_batch_generator_unknown_key_is_an_error():
    ds = _random_dataset()
    with pytest.raises(DatasetError, match=r"no data key 'target'"):
        BatchGenerator(ds, data_keys=["data", "target"])


def test_batching_hdf_dataset_covers_all_frames(tmp_path):
    from returnn.datasets import dump_dataset

    source = init_dataset({"class": "SyntheticSpeechDataset", "num_seqs": 30, "fixed_random_seed": 2})
    path = str(tmp_path / "b.hdf")
    dump_dataset(source, path)
    ds = init_dataset({"class": "HDFDataset", "files": [path], "seq_ordering": "laplace:3"})
    seen = _collect(BatchGenerator(ds, batch_size=300, max_seqs=8, epoch=1))
    source.init_seq_order(epoch=1)
    for i in range(source.num_seqs):
        (frames,) = seen[source.get_tag(i)]["data"]
        np.testing.assert_array_equal(frames, source.get_data(i, "data"))
