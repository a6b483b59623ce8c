"""MetaDataset (join by tag), ConcatDataset, tag filters."""

from __future__ import annotations

import numpy as np
import pytest

from returnn.datasets import init_dataset
from returnn.errors import DatasetError


def _static(tags: list[str], key: str, offset: int = 0, **kwargs) -> dict:
    data = [{key: np.arange(offset + i + 1, dtype=np.int32), "seq_tag": t} for i, t in enumerate(tags)]
    return {"class": "StaticDataset", "data": data, "output_dim": {key: 100}, **kwargs}


def _seqs(ds, epoch: int = 1) -> list[tuple[str, dict]]:
    ds.init_seq_order(epoch=epoch)
    return [(ds.get_tag(i), {k: ds.get_data(i, k).tolist() for k in ds.get_data_keys()}) for i in range(ds.num_seqs)]


def test_meta_dataset_joins_keys_by_tag():
    ds = init_dataset({
        "class": "MetaDataset",
        "datasets": {"a": _static(["x", "y", "z"], "data"), "b": _static(["z", "x", "y", "w"], "classes", offset=10)},
        "data_map": {"data": ("a", "data"), "classes": ("b", "classes")},
    })
    assert ds.num_outputs == {"data": [100, 1], "classes": [100, 1]}
    seqs = _seqs(ds)
    assert [t for t, _ in seqs] == ["x", "y", "z"]
    assert seqs[0][1] == {"data": [0], "classes": list(range(12))}
    assert seqs[2][1] == {"data": [0, 1, 2], "classes": list(range(11))}
    assert ds.get_seq_length(0) == {"data": 1, "classes": 12}


def test_meta_dataset_uses_control_order_and_seq_list_file(tmp_path):
    spec = {
        "class": "MetaDataset",
        "datasets": {"a": _static(["x", "y", "z"], "data", seq_ordering="sorted_reverse"),
                     "b": _static(["z", "x", "y"], "classes")},
        "data_map": {"data": ("a", "data"), "classes": ("b", "classes")},
        "seq_order_control_dataset": "a",
    }
    assert [t for t, _ in _seqs(init_dataset(spec))] == ["z", "y", "x"]
    (tmp_path / "list").write_text("x\nz\n")
    assert [t for t, _ in _seqs(init_dataset(dict(spec, seq_list_file=str(tmp_path / "list"))))] == ["z", "x"]
    assert [t for t, _ in _seqs(init_dataset(dict(spec, seq_ordering="sorted")))] == ["x", "y", "z"]


def test_meta_dataset_errors_name_dataset_and_tag():
    base = {"class": "MetaDataset", "datasets": {"a": _static(["x", "y"], "data"), "b": _static(["x"], "classes")}}
    with pytest.raises(DatasetError, match=r"dataset 'b' lacks a tag of 'a'.*'y'"):
        init_dataset(dict(base, data_map={"data": ("a", "data"), "classes": ("b", "classes")}))
    with pytest.raises(DatasetError, match=r"no data key 'target'"):
        init_dataset(dict(base, data_map={"data": ("a", "data"), "classes": ("b", "target")}))
    with pytest.raises(DatasetError, match=r"data_map\['classes'\]"):
        init_dataset(dict(base, data_map={"data": ("a", "data"), "classes": ("c", "classes")}))


def test_concat_dataset_keeps_part_orders_and_checks_keys(spec_example):
    ds = init_dataset({"class": "ConcatDataset", "datasets": [_static(["a", "b"], "data"),
                                                              _static(["c", "d", "e"], "data", seq_ordering="reverse")]})
    assert [t for t, _ in _seqs(ds)] == ["a", "b", "e", "d", "c"]
    assert ds.get_all_tags() == ["a", "b", "c", "d", "e"]
    shuffled = init_dataset({"class": "ConcatDataset", "seq_ordering": "sorted_reverse",
                             "datasets": [_static(["a", "b"], "data"), _static(["c", "d"], "data", offset=5)]})
    assert [t for t, _ in _seqs(shuffled)] == ["d", "c", "b", "a"]
    with pytest.raises(DatasetError, match=r"datasets\[1\] has keys"):
        init_dataset({"class": "ConcatDataset", "datasets": [_static(["a"], "data"), spec_example]})
    twice = init_dataset({"class": "ConcatDataset", "datasets": [spec_example, spec_example]})
    assert [t for t, _ in _seqs(twice)] == ["seq-0", "seq-1", "seq-0", "seq-1"]


def test_tag_filter_on_meta_and_concat():
    ds = init_dataset({"class": "ConcatDataset", "seq_list_filter_file": ["b", "d"],
                       "datasets": [_static(["a", "b"], "data"), _static(["c", "d"], "data")]})
    assert [t for t, _ in _seqs(ds)] == ["b", "d"]
    meta = init_dataset({"class": "MetaDataset", "datasets": {"a": _static(["x", "y", "z"], "data")},
                         "data_map": {"data": ("a", "data")}, "seq_list_filter_file": ["z"]})
    assert [t for t, _ in _seqs(meta)] == ["z"]
