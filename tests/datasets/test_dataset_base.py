"""Dataset base API: init_dataset forms, registry, options, per-epoch order, filters, user classes."""

from __future__ import annotations

import numpy as np
import pytest

from returnn.datasets import Dataset, DatasetSeq, GeneratingDataset, HDFDataset, init_dataset, register_dataset
from returnn.errors import DatasetError


def _static(n: int = 10, **kwargs) -> Dataset:
    data = [{"data": np.full((i + 1, 2), i, np.float32), "classes": np.arange(i % 4 + 1, dtype=np.int32),
             "seq_tag": f"t{i}"} for i in range(n)]
    return init_dataset({"class": "StaticDataset", "data": data, "output_dim": {"classes": 4}, **kwargs})


def _tags(ds: Dataset, epoch: int) -> list[str]:
    ds.init_seq_order(epoch=epoch)
    return [ds.get_tag(i) for i in range(ds.num_seqs)]


def test_init_dataset_accepts_hdf_path_list_and_dict_string(spec_example):
    for spec in (spec_example, [spec_example], f"{spec_example},{spec_example}",
                 "{'class': 'HDFDataset', 'files': ['%s']}" % spec_example):
        ds = init_dataset(spec)
        assert isinstance(ds, HDFDataset)
    assert init_dataset(f"{spec_example},{spec_example}").num_seqs == 4
    assert Dataset.from_config(spec_example).num_seqs == 2


def test_scripting_api_names():
    ds = _static(5)
    ds.init_seq_order(epoch=1)
    assert ds.num_seqs == 5 and ds.is_less_than_num_seqs(4) and not ds.is_less_than_num_seqs(5)
    ds.load_seqs(0, 2)
    np.testing.assert_array_equal(ds.get_data(1, "data"), np.full((2, 2), 1))
    assert ds.get_seq_length(1)["data"] == 2 and ds.get_seq_length(1)["classes"] == 2
    assert ds.get_data_keys() == ["data", "classes"] and ds.get_target_list() == ["classes"]
    assert ds.num_outputs == {"data": [2, 2], "classes": [4, 1]} and ds.num_inputs == 2
    assert ds.get_all_tags() == [f"t{i}" for i in range(5)]
    assert ds.estimated_num_seqs == 5
    np.testing.assert_array_equal(ds.get_targets("classes", 2), [0, 1, 2])
    np.testing.assert_array_equal(ds.get_input_data(0), [[0, 0]])
    assert ds.get_extern_data() == {
        "data": {"dim": 2, "shape": (None, 2), "dtype": "float32"},
        "classes": {"dim": 4, "shape": (None,), "dtype": "int32", "sparse": True},
    }


def test_unknown_class_and_option_errors_name_them():
    with pytest.raises(DatasetError, match=r"unknown dataset class 'HDFDatset'; did you mean 'HDFDataset'"):
        init_dataset({"class": "HDFDatset", "files": []})
    with pytest.raises(DatasetError, match=r"'StaticDataset': unknown option 'seq_orderin'; did you mean 'seq_ordering'"):
        _static(seq_orderin="sorted")
    with pytest.raises(DatasetError, match=r"missing key \"class\""):
        init_dataset({"files": ["a.hdf"]})
    with pytest.raises(DatasetError, match=r"seq_ordering 'sortd'"):
        _static(seq_ordering="sortd")
    with pytest.raises(DatasetError, match="expected a dict"):
        init_dataset(42)


class _UserDataset(Dataset):
    """A dataset as a user would define it in a Python config."""

    def __init__(self, num: int = 3, **kwargs):
        super().__init__(**kwargs)
        self.num = num
        self.num_outputs = {"data": [1, 2], "classes": [3, 1]}
        self._dtypes = {"data": "float32", "classes": "int32"}

    def _num_corpus_seqs(self) -> int:
        return self.num

    def _load_corpus_seq(self, corpus_idx: int) -> dict:
        return {"data": np.ones((corpus_idx + 1, 1), np.float32), "classes": np.array([corpus_idx % 3], np.int32)}


class _UserGenerating(GeneratingDataset):
    """RETURNN-style GeneratingDataset subclass from a config."""

    def __init__(self, **kwargs):
        super().__init__(input_dim=2, output_dim=5, num_seqs=4, **kwargs)

    def generate_seq(self, seq_idx: int) -> DatasetSeq:
        n = self.random.randint(1, 6)
        return DatasetSeq(seq_idx, self.random.normal(size=(n, 2)), np.arange(n) % 5)


class _Config:
    """Anything with typed_value, like returnn.config.Config."""

    def __init__(self, values: dict):
        self.values = values

    def typed_value(self, key: str, default=None):
        return self.values.get(key, default)


def test_user_dataset_classes_from_config():
    ds = init_dataset({"class": _UserDataset, "num": 4, "seq_ordering": "sorted_reverse"})
    assert _tags(ds, 1) == ["seq-3", "seq-2", "seq-1", "seq-0"]
    register_dataset(_UserDataset, name="MyUserDataset")
    assert init_dataset({"class": "MyUserDataset"}).num_seqs == 3
    by_config = init_dataset({"class": "MyGen"}, config=_Config({"MyGen": _UserGenerating}))
    by_config.init_seq_order(epoch=1)
    assert by_config.num_seqs == 4 and by_config.get_data(0, "data").dtype == np.float32
    with pytest.raises(DatasetError, match="expected a subclass of Dataset"):
        register_dataset(dict)


def test_partition_epoch_visits_each_sequence_once_per_full_epoch():
    ds = _static(11, partition_epoch=3, seq_ordering="random")
    full1 = _tags(ds, 1) + _tags(ds, 2) + _tags(ds, 3)
    full2 = _tags(ds, 4) + _tags(ds, 5) + _tags(ds, 6)
    assert sorted(full1) == sorted(full2) == sorted(f"t{i}" for i in range(11))
    assert full1 != full2
    assert ds.estimated_num_seqs == len(_tags(ds, 6))


def test_seq_list_filter_file_and_list(tmp_path):
    path = tmp_path / "tags.txt"
    path.write_text("t3\nt1\n\nt7\n")
    assert _tags(_static(seq_list_filter_file=str(path)), 1) == ["t1", "t3", "t7"]
    assert _tags(_static(seq_list_filter_file=["t2", "t9"]), 1) == ["t2", "t9"]
    with pytest.raises(DatasetError, match="matches no sequence tag"):
        _tags(_static(seq_list_filter_file=["zzz"]), 1)
    with pytest.raises(DatasetError, match=r"cannot read file .*missing\.txt"):
        _tags(_static(seq_list_filter_file=str(tmp_path / "missing.txt")), 1)


def test_fixed_random_subset_is_the_same_every_epoch():
    ds = _static(20, fixed_random_subset=5)
    assert len(_tags(ds, 1)) == 5 and _tags(ds, 1) == _tags(ds, 2)


def test_init_seq_order_with_seq_list_and_unknown_tag():
    ds = _static()
    ds.init_seq_order(epoch=1, seq_list=["t5", "t0", "t5"])
    assert [ds.get_tag(i) for i in range(ds.num_seqs)] == ["t5", "t0", "t5"]
    with pytest.raises(DatasetError, match=r"unknown sequence tag 'nope'"):
        ds.init_seq_order(epoch=1, seq_list=["t1", "nope"])


def test_window_concatenates_neighbour_frames():
    seq = {"data": np.arange(6, dtype=np.float32).reshape(3, 2), "classes": np.zeros(3, np.int32)}
    ds = init_dataset({"class": "StaticDataset", "data": [seq], "window": 3})
    ds.init_seq_order(epoch=1)
    assert ds.get_data_dim("data") == 6
    np.testing.assert_array_equal(ds.get_data(0, "data"), [[0, 0, 0, 1, 2, 3], [0, 1, 2, 3, 4, 5], [2, 3, 4, 5, 0, 0]])


def test_get_data_out_of_range_is_an_error():
    ds = _static(3)
    ds.init_seq_order(epoch=1)
    with pytest.raises(DatasetError, match="out of range"):
        ds.get_data(3, "data")


def test_returnn_style_subclass_sets_num_inputs_and_uses_returnn_import_paths():
    from returnn.datasets.basic import Dataset as BasicDataset
    from returnn.datasets.basic import DatasetSeq as BasicSeq
    from returnn.datasets.hdf import SimpleHDFWriter as HdfWriter

    from returnn.datasets import SimpleHDFWriter

    assert BasicDataset is Dataset and BasicSeq is DatasetSeq and HdfWriter is SimpleHDFWriter

    class Ramp(BasicDataset):
        def __init__(self, **kwargs):
            super().__init__(**kwargs)
            self.num_outputs = {"classes": [4, 1]}
            self.num_inputs = 3

        def _num_corpus_seqs(self) -> int:
            return 2

        def _load_corpus_seq(self, corpus_idx: int) -> dict:
            return {"data": np.zeros((2, 3), np.float32), "classes": np.array([corpus_idx, 3], np.int32)}

    ds = Ramp()
    assert ds.num_outputs == {"classes": [4, 1], "data": [3, 2]} and ds.num_inputs == 3
    assert ds.get_data_dtype("data") == "float32" and ds.is_data_sparse("classes")


def test_init_dataset_from_config_applies_returnn_defaults(spec_example):
    from returnn.config import Config

    from returnn.datasets import init_dataset_from_config

    config = Config({"train": {"class": "Task12AXDataset", "num_seqs": 5}, "dev": spec_example,
                     "eval": {"class": "Task12AXDataset", "seq_ordering": "reverse"},
                     "batching": "random", "chunking": "10:5", "window": 3})
    train = init_dataset_from_config(config, "train")
    assert (train.seq_ordering, train.chunking, train.window) == ("random", "10:5", 3)
    dev = init_dataset_from_config(config, "dev")
    assert isinstance(dev, HDFDataset) and dev.seq_ordering == "sorted" and dev.chunking is None
    assert init_dataset_from_config(config, "eval").seq_ordering == "reverse"
    assert init_dataset_from_config(config, "forward") is None
    assert init_dataset_from_config({"train": {"class": _UserDataset}, "batching": "sorted"}, "train").seq_ordering == "sorted"

    class Strict(_UserDataset):
        def __init__(self, num: int = 2):
            super().__init__(num=num)

    assert init_dataset_from_config({"dev": {"class": Strict}}, "dev").num_seqs == 2


def test_init_dataset_accepts_returnns_module_class_call_string():
    ds = init_dataset("GeneratingDataset::Task12AXDataset(num_seqs=7, fixed_random_seed=1)")
    assert type(ds).__name__ == "Task12AXDataset" and ds.num_seqs == 7
    with pytest.raises(DatasetError, match=r"expected 'Module::Class\(key=value, \.\.\.\)' with literal values"):
        init_dataset("GeneratingDataset::Task12AXDataset(num_seqs=os.getpid())")
