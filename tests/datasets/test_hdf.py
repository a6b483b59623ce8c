"""HDFDataset against files built with h5py per shared/specs/hdf-format.md (worked example and variants)."""

from __future__ import annotations

import h5py
import numpy as np
import pytest
from hdf_spec_example import EXAMPLE_CLASSES, EXAMPLE_DATA, write_spec_example

from returnn.datasets import HDFDataset, SimpleHDFWriter, init_dataset
from returnn.errors import DatasetError


def _seq(ds, i: int) -> dict:
    ds.load_seqs(i, i + 1)
    return {k: ds.get_data(i, k) for k in ds.get_data_keys()}


def _check_example_content(ds, *, labels: bool = True) -> None:
    assert ds.get_data_keys() == ["data", "classes"]
    assert ds.get_target_list() == ["classes"]
    assert ds.num_inputs == 3
    assert ds.num_outputs == {"data": [3, 2], "classes": [5, 1]}
    assert (ds.get_data_dtype("data"), ds.is_data_sparse("data"), ds.get_data_dim("data"), ds.get_data_shape("data")) == (
        "float32", False, 3, [3])
    assert (ds.get_data_dtype("classes"), ds.is_data_sparse("classes"), ds.get_data_dim("classes"),
            ds.get_data_shape("classes")) == ("int32", True, 5, [])
    if labels:
        assert ds.labels["classes"] == ["a", "b", "c", "d", "e"]
    ds.init_seq_order(epoch=1)
    assert ds.num_seqs == 2
    assert ds.get_tag(0) == "seq-0" and ds.get_tag(1) == "seq-1"
    assert ds.get_seq_length(0) == {"data": 2, "classes": 4}
    assert ds.get_seq_length(1) == {"data": 3, "classes": 2}
    s0, s1 = _seq(ds, 0), _seq(ds, 1)
    np.testing.assert_array_equal(s0["data"], EXAMPLE_DATA[0:2])
    np.testing.assert_array_equal(s0["classes"], [0, 1, 2, 3])
    np.testing.assert_array_equal(s1["data"], EXAMPLE_DATA[2:5])
    np.testing.assert_array_equal(s1["classes"], [4, 0])
    assert s1["classes"].dtype == np.int32 and s1["data"].dtype == np.float32
    assert ds.get_all_tags() == ["seq-0", "seq-1"]


def test_hdf_reads_spec_worked_example(spec_example):
    ds = init_dataset({"class": "HDFDataset", "files": [spec_example]})
    _check_example_content(ds)
    assert ds.labels["data"] == []


@pytest.mark.parametrize("opts", [{"vlen_tags": True, "scalar_size": True}, {"bare": True}])
def test_hdf_reads_spec_example_variants_of_encoding(tmp_path, opts):
    path = write_spec_example(str(tmp_path / "v.hdf"), **opts)
    _check_example_content(init_dataset(path), labels=not opts.get("bare"))


def test_hdf_with_cache_reads_the_same(spec_example):
    ds = HDFDataset(files=[spec_example], cache_byte_size=10**6)
    _check_example_content(ds)
    _check_example_content(ds)


def test_hdf_same_file_listed_twice(spec_example):
    ds = init_dataset([spec_example, spec_example])
    ds.init_seq_order(epoch=1)
    assert ds.num_seqs == 4
    assert [ds.get_tag(i) for i in range(4)] == ["seq-0", "seq-1", "seq-0", "seq-1"]
    for i in (0, 1):
        a, b = _seq(ds, i), _seq(ds, i + 2)
        for key in a:
            np.testing.assert_array_equal(a[key], b[key])


def test_hdf_targets_only(tmp_path):
    path = str(tmp_path / "t.hdf")
    with h5py.File(path, "w") as f:
        f.create_dataset("seqLengths", data=np.array([[4], [2]], dtype=np.int32))
        f.create_dataset("seqTags", data=np.array([b"seq-0", b"seq-1"]))
        f.create_dataset("targets/data/classes", data=EXAMPLE_CLASSES)
        f.create_group("targets/size").attrs["classes"] = np.array([5, 1])
        f.create_dataset("targets/labels/classes", data=np.array([b"a", b"b", b"c", b"d", b"e"]))
    ds = init_dataset(path)
    assert ds.get_data_keys() == ["classes"] and ds.num_inputs == 0
    ds.init_seq_order(epoch=1)
    np.testing.assert_array_equal(_seq(ds, 0)["classes"], [0, 1, 2, 3])
    np.testing.assert_array_equal(_seq(ds, 1)["classes"], [4, 0])


def test_hdf_sparse_input_without_targets(tmp_path):
    path = str(tmp_path / "s.hdf")
    with SimpleHDFWriter(path, dim=5, ndim=1, labels=list("abcde")) as w:
        w.insert_batch(np.array([[1, 2, 3]], dtype=np.int32), [3], ["s0"])
        w.insert_batch(np.array([[4]], dtype=np.int32), [1], ["s1"])
    with h5py.File(path, "r") as f:
        np.testing.assert_array_equal(f["inputs"][...], [1, 2, 3, 4])
        np.testing.assert_array_equal(f["seqLengths"][...], [[3, 0], [1, 0]])
        assert f.attrs["inputPattSize"] == 5 and f.attrs["numLabels"] == 5
    ds = init_dataset(path)
    assert ds.get_data_keys() == ["data"] and ds.num_outputs == {"data": [5, 1]}
    assert ds.is_data_sparse("data") and ds.get_data_dtype("data") == "int32"
    assert ds.labels["data"] == list("abcde")
    ds.init_seq_order(epoch=1)
    np.testing.assert_array_equal(_seq(ds, 1)["data"], [4])


def test_hdf_two_predeclared_extras_use_sorted_columns(tmp_path):
    path = str(tmp_path / "x.hdf")
    extra_type = {"classes": (5, 1, "int32"), "align": (7, 1, "int32")}
    with SimpleHDFWriter(path, dim=3, extra_type=extra_type) as w:
        w.insert_batch(EXAMPLE_DATA[None, 0:2], [2], ["seq-0"],
                       extra={"classes": [EXAMPLE_CLASSES[:4]], "align": [np.array([6, 5], np.int32)]})
        w.insert_batch(EXAMPLE_DATA[None, 2:5], [3], ["seq-1"],
                       extra={"classes": [EXAMPLE_CLASSES[4:]], "align": [np.array([1, 2, 3], np.int32)]})
    with h5py.File(path, "r") as f:
        np.testing.assert_array_equal(f["seqLengths"][...], [[2, 2, 4], [3, 3, 2]])
        assert [s.decode() for s in f["targets/labels/align"][...]] == ["dummy-label"]
        np.testing.assert_array_equal(f["targets/size"].attrs["align"], [7, 1])
    ds = init_dataset({"class": "HDFDataset", "files": [path]})
    assert ds.get_data_keys() == ["data", "align", "classes"]
    assert ds.num_outputs == {"data": [3, 2], "align": [7, 1], "classes": [5, 1]}
    ds.init_seq_order(epoch=1)
    assert ds.get_seq_length(1) == {"data": 3, "align": 3, "classes": 2}
    np.testing.assert_array_equal(_seq(ds, 1)["align"], [1, 2, 3])
    np.testing.assert_array_equal(_seq(ds, 0)["classes"], [0, 1, 2, 3])


def test_hdf_missing_file_names_it(tmp_path):
    with pytest.raises(DatasetError, match=r"nope\.hdf.*does not exist"):
        init_dataset(str(tmp_path / "nope.hdf"))


def test_hdf_not_hdf5_names_file(tmp_path):
    path = tmp_path / "junk.hdf"
    path.write_bytes(b"this is not an HDF5 file" * 10)
    with pytest.raises(DatasetError, match=r"junk\.hdf.*corrupt or truncated"):
        init_dataset(str(path))


def test_hdf_truncated_file_names_file(tmp_path):
    path = write_spec_example(str(tmp_path / "trunc.hdf"))
    data = open(path, "rb").read()
    with open(path, "wb") as f:
        f.write(data[: len(data) // 2])
    with pytest.raises(DatasetError, match=r"trunc\.hdf"):
        ds = init_dataset(path)
        ds.init_seq_order(epoch=1)
        for i in range(ds.num_seqs):
            _seq(ds, i)


def test_hdf_rows_missing_names_file_and_key(tmp_path):
    path = str(tmp_path / "short.hdf")
    write_spec_example(path)
    with h5py.File(path, "a") as f:
        del f["targets/data/classes"]
        f.create_dataset("targets/data/classes", data=EXAMPLE_CLASSES[:5])
    with pytest.raises(DatasetError, match=r"short\.hdf.*key 'classes'.*6 frames.*5 rows"):
        init_dataset(path)


def test_hdf_key_without_size_attr_names_file_and_key(tmp_path):
    path = write_spec_example(str(tmp_path / "nosize.hdf"))
    with h5py.File(path, "a") as f:
        f.create_dataset("targets/data/align", data=np.zeros(6, np.int32))
    with pytest.raises(DatasetError, match=r"nosize\.hdf.*key 'align'.*targets/size"):
        init_dataset(path)


def test_hdf_key_mismatch_between_files_names_file_and_key(tmp_path, spec_example):
    other = str(tmp_path / "other.hdf")
    with SimpleHDFWriter(other, dim=3) as w:
        w.insert_batch(EXAMPLE_DATA[None], [5], ["x"])
    with pytest.raises(DatasetError, match=r"other\.hdf.*lacks key 'classes'"):
        init_dataset([spec_example, other])


def test_hdf_unknown_key_names_available_keys(spec_example):
    ds = init_dataset(spec_example)
    ds.init_seq_order(epoch=1)
    with pytest.raises(DatasetError, match=r"no data key 'clases'.*\['data', 'classes'\]"):
        ds.get_data(0, "clases")


def test_hdf_legacy_1d_seq_lengths_and_target_classes(tmp_path):
    path = str(tmp_path / "old.hdf")
    with h5py.File(path, "w") as f:
        f.attrs["inputPattSize"], f.attrs["numLabels"] = 3, 4
        f.create_dataset("inputs", data=EXAMPLE_DATA)
        f.create_dataset("seqLengths", data=np.array([2, 3], dtype=np.int32))
        f.create_dataset("targetClasses", data=np.array([0, 1, 2, 3, 0], dtype=np.int32))
        f.create_dataset("seqTags", data=np.array([b"a", b"b"]))
        f.create_dataset("labels", data=np.array([b"w", b"x", b"y", b"z"]))
    ds = init_dataset(path)
    assert ds.num_outputs == {"data": [3, 2], "classes": [4, 1]}
    assert ds.labels == {"classes": ["w", "x", "y", "z"]}
    ds.init_seq_order(epoch=1)
    np.testing.assert_array_equal(_seq(ds, 1)["classes"], [2, 3, 0])


def test_hdf_seq_ordering_sorted_uses_lengths(spec_example):
    ds = init_dataset({"class": "HDFDataset", "files": [spec_example], "seq_ordering": "sorted_reverse"})
    ds.init_seq_order(epoch=1)
    assert [ds.get_tag(i) for i in range(2)] == ["seq-1", "seq-0"]
    np.testing.assert_array_equal(_seq(ds, 0)["classes"], [4, 0])


def test_hdf_bulk_reads_across_files_match_single_reads(tmp_path):
    from returnn.datasets import dump_dataset

    paths = []
    for part in range(2):
        src = init_dataset({"class": "SyntheticSpeechDataset", "num_seqs": 9, "fixed_random_seed": part})
        paths.append(str(tmp_path / f"p{part}.hdf"))
        dump_dataset(src, paths[-1])
    bulk = init_dataset({"class": "HDFDataset", "files": paths, "seq_ordering": "random"})
    single = init_dataset({"class": "HDFDataset", "files": paths, "seq_ordering": "random", "cache_byte_size": 20000})
    bulk.init_seq_order(epoch=3)
    single.init_seq_order(epoch=3)
    bulk.load_seqs(0, bulk.num_seqs)
    assert bulk.num_seqs == 18
    for i in range(18):
        assert bulk.get_tag(i) == single.get_tag(i)
        for key in ("data", "classes"):
            np.testing.assert_array_equal(bulk.get_data(i, key), _seq(single, i)[key])
    assert 0 < single._lru_bytes <= 20000 and len(single._lru) < 18


def test_hdf_reads_returnn_hdf_dump_variant(tmp_path):
    path = write_spec_example(str(tmp_path / "dump.hdf"), bare=True)
    with h5py.File(path, "a") as f:
        f.attrs["inputPattSize"] = 3
        f.create_dataset("targets/labels/classes", data=np.array([b"a", b"b", b"c", b"d", b"e"], dtype="S2"))
    ds = init_dataset(path)
    _check_example_content(ds)
    assert "data" not in ds.labels


@pytest.mark.parametrize("with_keys", [False, True])
def test_hdf_file_without_sequences_is_named_as_empty(tmp_path, spec_example, with_keys):
    path = str(tmp_path / "empty.hdf")
    if with_keys:  # keys declared, zero rows
        with h5py.File(path, "w") as f:
            f.create_dataset("inputs", shape=(0, 3), dtype=np.float32)
            f.create_dataset("seqLengths", shape=(0, 2), dtype=np.int32)
            f.create_dataset("seqTags", shape=(0,), dtype="S5")
    else:  # as SimpleHDFWriter leaves it when nothing was inserted
        SimpleHDFWriter(path, dim=3).close()
    with pytest.raises(DatasetError, match=rf"file '{path}' is empty: it holds no sequences"):
        init_dataset([spec_example, path])
