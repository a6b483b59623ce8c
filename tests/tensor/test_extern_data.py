import pytest

from returnn.errors import ConfigError
from returnn.tensor.extern_data import ExternData, batch_feed, extern_data_from_num_outputs, seq_len_key, size_keys
from returnn.tensor.dim import FEATURE, Dim, batch_dim


def test_extern_data_returnn_form():
    ext = ExternData({"data": {"dim": 9}, "classes": {"dim": 2, "sparse": True}})
    data, classes = ext["data"], ext["classes"]
    assert data.batch_shape == (None, None, 9) and data.dtype == "float32" and data.time_dim_axis == 1
    assert classes.sparse and classes.dim == 2 and classes.dtype == "int32" and classes.batch_shape == (None, None)


def test_extern_data_shape_dtype_and_axes():
    ext = ExternData({
        "img": {"shape": (None, None, 3), "dim": 3},
        "vec": {"shape": (7,), "time_dim_axis": None, "available_for_inference": False},
        "x": {"shape": (5, None), "dim": None, "time_dim_axis": 2, "feature_dim_axis": 1, "dtype": "float64"},
    })
    img = ext["img"]
    assert img.time_dim_axis == 1 and img.feature_dim_axis == 3 and img.get_axes("dynamic") == [1, 2]
    assert ext["vec"].time_dim is None and ext["vec"].dim == 7 and not ext["vec"].available_for_inference
    x = ext["x"]
    assert x.time_dim_axis == 2 and x.feature_dim_axis == 1 and x.dtype == "float64"


def test_extern_data_num_outputs_form():
    ext = ExternData.from_config({"num_outputs": {"data": [100, 2], "classes": [5000, 1]}})
    assert ext["data"].dim == 100 and not ext["data"].sparse
    assert ext["classes"].dim == 5000 and ext["classes"].sparse
    assert extern_data_from_num_outputs(40, 10) == {"classes": {"dim": 10, "sparse": True},
                                                    "data": {"dim": 40, "sparse": False}}


def test_extern_data_num_outputs_data_entry_says_sparse_input():
    # RETURNN's att-copy demo: num_inputs = 10 plus a sparse "data" entry in num_outputs
    ext = ExternData.from_config({"num_inputs": 10, "num_outputs": {"data": [10, 1], "classes": [10, 1]}})
    assert ext["data"].sparse and ext["data"].sparse_dim.size == 10
    assert ExternData.from_config({"num_inputs": 7, "num_outputs": 3, "sparse_input": True})["data"].sparse
    with pytest.raises(ConfigError, match=r'"num_inputs" 5 and num_outputs\["data"\] \[10, 1\] disagree'):
        ExternData.from_config({"num_inputs": 5, "num_outputs": {"data": [10, 1]}})


class _Config:
    def __init__(self, items):
        self.items = items

    def typed_value(self, key, default=None):
        return self.items.get(key, default)


def test_extern_data_from_config_object_prefers_extern_data():
    ext = ExternData.from_config(_Config({"extern_data": {"data": {"dim": 3}}, "num_inputs": 5}))
    assert ext["data"].dim == 3


@pytest.mark.parametrize("opts, match", [
    ({"data": {"dimm": 3}}, r'extern_data\["data"\]: unknown options \[\'dimm\'\]'),
    ({"data": {"dim": "3"}}, r'\["dim"\]: expected a positive int'),
    ({"data": {"shape": (None, 4), "dim": 5}}, r'"shape" \(None, 4\) ends in 4, but "dim" is 5'),
    ({"data": {}}, r'needs "dim" or "shape"'),
    ({"data": {"dim": 3, "time_dim_axis": 5}}, r'\["time_dim_axis"\]: expected None or an axis in 1..2'),
])
def test_extern_data_bad_options_name_key(opts, match):
    with pytest.raises(ConfigError, match=match):
        ExternData(opts)


def test_extern_data_missing_key_lists_keys():
    with pytest.raises(ConfigError, match="no extern data key 'y'; extern_data has: data"):
        ExternData({"data": {"dim": 3}})["y"]
    with pytest.raises(ConfigError, match="needs \"extern_data\""):
        ExternData.from_config({})
    with pytest.raises(ConfigError, match=r"ndim must be 1 \(sparse\) or 2"):
        ExternData.from_config({"num_outputs": {"classes": [5, 3]}})


def test_seq_len_key():
    assert seq_len_key("data") == "data:seq_len" and seq_len_key("img", 2) == "img:size2"


def test_size_keys_and_batch_feed():
    ext = ExternData({"img": {"shape": (None, None, 3), "dim": 3}})
    img = ext["img"]
    assert list(size_keys("img", img).values()) == ["img:seq_len", "img:size2"]

    class Batch:
        data = {"img": 1}
        seq_lens = {"img": 2}

    assert batch_feed(Batch()) == {"img": 1, "img:seq_len": 2}
    assert batch_feed({"x": 1}) == {"x": 1}


@pytest.mark.parametrize("opts, match", [
    ({"dims": [batch_dim, batch_dim, Dim(3, "f", kind=FEATURE)]}, r"more than one batch dim"),
    ({"shape": (None, "x")}, r"size must be a non-negative int or None, got 'x'"),
    ({"shape": (-3, 4)}, r"size must be a non-negative int or None, got -3"),
    ({"shape": 5}, r"not iterable"),
    ({"dims": [batch_dim], "sparse_dim": 3}, r'\["sparse_dim"\]: expected a Dim \(the vocab\) or None, got 3'),
    ({"dim": 3, "dtype": "flaot32"}, r'\["dtype"\]: expected a dtype name like "float32"'),
])
def test_extern_data_bad_dims_are_config_errors_naming_the_key(opts, match):
    with pytest.raises(ConfigError, match=r'extern_data\["feats"\].*' + match):
        ExternData({"feats": opts})
