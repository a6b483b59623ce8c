"""SimpleHDFWriter and dump_dataset: RETURNN's layout, round trips, atomic files."""

from __future__ import annotations

import os

import h5py
import numpy as np
import pytest
from hdf_spec_example import EXAMPLE_CLASSES, EXAMPLE_DATA

from returnn.datasets import SimpleHDFWriter, StaticDataset, dump_dataset, hdf_writer, init_dataset
from returnn.errors import DatasetError


def _all_seqs(ds) -> list[tuple[str, dict, dict]]:
    ds.init_seq_order(epoch=1)
    out = []
    for i in range(ds.num_seqs):
        ds.load_seqs(i, i + 1)
        out.append((ds.get_tag(i), ds.get_seq_length(i), {k: ds.get_data(i, k) for k in ds.get_data_keys()}))
    return out


def _assert_same(a, b) -> None:
    assert a.get_data_keys() == b.get_data_keys()
    assert a.num_outputs == b.num_outputs
    for key in a.get_data_keys():
        assert a.get_data_dtype(key) == b.get_data_dtype(key)
    seqs_a, seqs_b = _all_seqs(a), _all_seqs(b)
    assert len(seqs_a) == len(seqs_b)
    for (tag_a, lens_a, data_a), (tag_b, lens_b, data_b) in zip(seqs_a, seqs_b):
        assert tag_a == tag_b and lens_a == lens_b
        for key in data_a:
            assert data_a[key].dtype == data_b[key].dtype
            np.testing.assert_array_equal(data_a[key], data_b[key])


@pytest.mark.parametrize(
    "spec",
    [
        {"class": "Task12AXDataset", "num_seqs": 20},
        {"class": "SyntheticSpeechDataset", "num_seqs": 15},
        {"class": "ReverseTaskDataset", "num_seqs": 20, "nsymbols": 7},
    ],
)
def test_round_trip_synthetic_dataset_through_hdf(tmp_path, spec):
    source = init_dataset(dict(spec, fixed_random_seed=5))
    path = str(tmp_path / "out.hdf")
    assert dump_dataset(source, path) == spec["num_seqs"]
    _assert_same(source, init_dataset(path))


def test_round_trip_keeps_dtypes_and_large_values(tmp_path):
    seqs = [
        {"data": np.arange(6, dtype=np.float32).reshape(3, 2), "classes": np.array([2**31 - 1, 0], np.int32),
         "bytes": np.array([255, 1, 2], np.uint8), "small": np.array([-7], np.int16), "seq_tag": "ü/1"},
        {"data": np.zeros((0, 2), np.float32), "classes": np.array([5], np.int32),
         "bytes": np.array([], np.uint8), "small": np.array([3, 4], np.int16), "seq_tag": "b/2"},
    ]
    source = StaticDataset(data=seqs, output_dim={"classes": 2**31, "bytes": 256, "small": 10})
    path = str(tmp_path / "types.hdf")
    dump_dataset(source, path)
    _assert_same(source, init_dataset(path))


def test_dump_of_spec_example_matches_spec_arrays(tmp_path):
    source = StaticDataset(
        data=[{"data": EXAMPLE_DATA[0:2], "classes": EXAMPLE_CLASSES[:4], "seq_tag": "seq-0"},
              {"data": EXAMPLE_DATA[2:5], "classes": EXAMPLE_CLASSES[4:], "seq_tag": "seq-1"}],
        output_dim={"classes": 5},
    )
    source.labels = {"classes": list("abcde")}
    path = str(tmp_path / "ex.hdf")
    dump_dataset(source, path)
    with h5py.File(path, "r") as f:
        np.testing.assert_array_equal(f["inputs"][...], EXAMPLE_DATA)
        np.testing.assert_array_equal(f["seqLengths"][...], [[2, 4], [3, 2]])
        np.testing.assert_array_equal(f["targets/data/classes"][...], EXAMPLE_CLASSES)
        np.testing.assert_array_equal(f["targets/size"].attrs["classes"], [5, 1])
        assert [t.decode() for t in f["seqTags"][...]] == ["seq-0", "seq-1"]
        assert [t.decode() for t in f["targets/labels/classes"][...]] == list("abcde")
        assert dict(f.attrs) == {"inputPattSize": 3, "numLabels": 3, "numSeqs": 2, "numTimesteps": 5, "numDims": 1}
        assert "labels" not in f  # dense inputs: RETURNN's tools would index a "data" label list with frames
    assert "data" not in init_dataset({"class": "HDFDataset", "files": [path]}).labels


def test_sparse_inputs_keep_root_labels(tmp_path):
    path = str(tmp_path / "sparse.hdf")
    with SimpleHDFWriter(path, dim=3, ndim=1) as writer:
        writer.insert_batch(np.array([[0, 2, 1]], np.int32), [3], ["s0"])
    with h5py.File(path, "r") as f:
        assert f["labels"].shape == (0,)


def test_writer_flushes_in_blocks_with_same_content(tmp_path, monkeypatch):
    monkeypatch.setattr(hdf_writer, "_FLUSH_BYTES", 64)
    source = init_dataset({"class": "SyntheticSpeechDataset", "num_seqs": 12, "fixed_random_seed": 1})
    path = str(tmp_path / "blocks.hdf")
    dump_dataset(source, path)
    _assert_same(source, init_dataset(path))


def test_writer_failure_leaves_no_file(tmp_path):
    path = str(tmp_path / "fail.hdf")
    with pytest.raises(RuntimeError):
        with SimpleHDFWriter(path, dim=3) as w:
            w.insert_batch(EXAMPLE_DATA[None], [5], ["x"])
            raise RuntimeError("boom")
    assert os.listdir(tmp_path) == []


def test_writer_refuses_existing_file(spec_example):
    with pytest.raises(DatasetError, match=r"example\.hdf.*exists"):
        SimpleHDFWriter(spec_example, dim=3)


def test_writer_late_extra_key_is_an_error(tmp_path):
    with pytest.raises(DatasetError, match=r"extra key 'align' must appear with the first sequence"):
        with SimpleHDFWriter(str(tmp_path / "late.hdf"), dim=3) as w:
            w.insert_batch(EXAMPLE_DATA[None], [5], ["x"])
            w.flush()
            w.insert_batch(EXAMPLE_DATA[None], [5], ["y"], extra={"align": [np.zeros(3, np.int32)]})


def test_writer_infers_undeclared_extra_as_dim_1(tmp_path):
    path = str(tmp_path / "inf.hdf")
    with SimpleHDFWriter(path, dim=3) as w:
        w.insert_batch(EXAMPLE_DATA[None, :2], [2], ["x"], extra={"classes": [np.array([1, 2, 3], np.int32)]})
    with h5py.File(path, "r") as f:
        np.testing.assert_array_equal(f["targets/size"].attrs["classes"], [1, 1])
        np.testing.assert_array_equal(f["seqLengths"][...], [[2, 3]])


def test_dump_needs_data_key(tmp_path):
    source = StaticDataset(data=[{"classes": np.array([1, 2])}])
    with pytest.raises(DatasetError, match=r"no key 'data'"):
        dump_dataset(source, str(tmp_path / "x.hdf"))
