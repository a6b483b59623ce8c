"""Bad values in a batch (labels out of range, NaN/inf features) fail in batch creation, naming file, tag and key."""

from __future__ import annotations

import time

import numpy as np
import pytest

from returnn.datasets import BatchGenerator, SimpleHDFWriter, StaticDataset, init_dataset
from returnn.datasets.batch_checks import check_batch_array
from returnn.datasets.chunking import SeqSlice
from returnn.errors import DatasetError


def _write_hdf(path: str, classes: list[np.ndarray], data: np.ndarray | None = None) -> str:
    """Dense data dim 4 (zeros unless given), sparse classes dim 2, tags t0, t1, ..."""
    n = len(classes)
    data = np.zeros((n, 5, 4), dtype=np.float32) if data is None else data
    writer = SimpleHDFWriter(path, dim=4, ndim=2, extra_type={"classes": (2, 1, "int32")})
    writer.insert_batch(data, [5] * n, [f"t{i}" for i in range(n)],
                        extra={"classes": [np.asarray(c, dtype=np.int32) for c in classes]})
    writer.close()
    return path


def _all_batches(ds, **kwargs) -> list:
    return list(BatchGenerator(ds, batch_size=1000, max_seqs=10, epoch=1, prefetch=0, **kwargs))


@pytest.mark.parametrize("bad", [57, 2, -3])
def test_sparse_label_out_of_range_names_file_tag_key_and_range(tmp_path, bad):
    path = _write_hdf(str(tmp_path / "dev.hdf"), [[0, 1, 0], [1, 0, bad, 1], [0]])
    ds = init_dataset({"class": "HDFDataset", "files": [path], "name": "dev"})
    with pytest.raises(DatasetError, match=rf"dataset 'dev', file '{path}', sequence 't1', key 'classes', "
                                           rf"frame 2: class index {bad} is out of range \[0, 2\)"):
        _all_batches(ds)


def test_nonfinite_feature_names_file_tag_key_frame_and_feature(tmp_path):
    data = np.zeros((2, 5, 4), dtype=np.float32)
    data[1, 3, 2] = np.inf
    path = _write_hdf(str(tmp_path / "train.hdf"), [[0], [1]], data=data)
    with pytest.raises(DatasetError, match=rf"file '{path}', sequence 't1', key 'data', frame 3, feature 2: "
                                           r"value inf is not finite"):
        _all_batches(init_dataset(path))


def test_meta_dataset_names_the_file_of_the_sub_dataset(tmp_path):
    good = _write_hdf(str(tmp_path / "feat.hdf"), [[0], [1]])
    bad = _write_hdf(str(tmp_path / "text.hdf"), [[0], [1, 5]])
    ds = init_dataset({"class": "MetaDataset", "datasets": {"f": good, "t": bad},
                       "data_map": {"data": ("f", "data"), "classes": ("t", "classes")}})
    with pytest.raises(DatasetError, match=rf"file '{bad}', sequence 't1', key 'classes', frame 1: class index 5"):
        _all_batches(ds)


def test_chunked_frame_is_counted_from_sequence_start():
    data = np.zeros((10, 2), dtype=np.float32)
    data[7, 1] = np.nan
    ds = StaticDataset(data=[{"data": data, "seq_tag": "only"}])
    with pytest.raises(DatasetError, match=r"dataset 'StaticDataset', sequence 'only', key 'data', frame 7, "
                                           r"feature 1: value nan"):
        _all_batches(ds, chunking="4:4")


def test_check_cost_on_a_typical_batch_is_small():
    """40 x 500 x 40 float features plus 40 x 500 labels: the check is a small part of padding the batch."""
    ds = StaticDataset(data=[{"data": np.zeros((2, 40), np.float32), "classes": np.zeros(2, np.int32)}],
                       output_dim={"classes": 5000})
    rng = np.random.default_rng(0)
    feats, labels = rng.normal(size=(40, 500, 40)).astype(np.float32), rng.integers(0, 5000, (40, 500)).astype(np.int32)
    plan = [SeqSlice(0, {"data": 0, "classes": 0}, {"data": 500, "classes": 500})] * 40
    start = time.perf_counter()
    for _ in range(20):
        check_batch_array(ds, "data", feats, plan)
        check_batch_array(ds, "classes", labels, plan)
    assert (time.perf_counter() - start) / 20 < 0.005  # measured about 0.1 ms
