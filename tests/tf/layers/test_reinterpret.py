import functools

import numpy as np
import pytest

from returnn.errors import LayerConfigError
from returnn.tensor.dim import Dim
from returnn.testing import build_network, run_network

EXTERN = {"data": {"dim": 6}, "classes": {"dim": 4, "sparse": True}}


_run = functools.partial(run_network, extern_data=EXTERN, n_batch=3, max_time=7)


def test_reinterpret_data_sparse_and_layout():
    net, batch, out = _run({"output": {"class": "reinterpret_data", "from": "data:classes", "set_sparse_dim": 9,
                                       "enforce_time_major": True}})
    y = out["output"]
    assert y.sparse_dim.size == 9 and y.dims[0] is net.extern_data["classes"].time_dim
    np.testing.assert_array_equal(y.numpy(), batch["classes"].T)
    np.testing.assert_array_equal(y.seq_lens.numpy(), batch.seq_lens("classes"))
    _, batch, out = _run({"output": {"class": "reinterpret_data", "from": "data:classes", "set_sparse": False}})
    assert not out["output"].sparse
    with pytest.raises(LayerConfigError, match=r"\"set_sparse\": sparse data needs an int dtype"):
        build_network({"output": {"class": "reinterpret_data", "set_sparse": True, "set_sparse_dim": 3}},
                      extern_data=EXTERN)


def test_reinterpret_data_set_dim_tags_and_size_base():
    new_dim = Dim(6, "my-feature", kind="feature")
    net, batch, out = _run({"a": {"class": "reinterpret_data", "set_dim_tags": {"F": new_dim}},
                            "output": {"class": "reinterpret_data", "from": "data:classes", "size_base": "a"}})
    assert out["a"].feature_dim is new_dim
    assert out["output"].time_dim is net.extern_data["data"].time_dim
    np.testing.assert_array_equal(out["output"].seq_lens.numpy(), batch.seq_lens("data"))
    with pytest.raises(LayerConfigError, match=r"layer 'output' \(class \"reinterpret_data\"\): \"set_dim_tags\": "
                                               r"cannot replace"):
        build_network({"output": {"class": "reinterpret_data", "set_dim_tags": {"F": Dim(3, "x")}}},
                      extern_data=EXTERN)


def test_reinterpret_data_set_axes_and_switch_axes():
    net, batch, out = _run({"output": {"class": "reinterpret_data", "switch_axes": ["T", "F"]}})
    data = net.extern_data["data"]
    assert out["output"].time_dim is data.feature_dim and out["output"].feature_dim is data.time_dim
    np.testing.assert_array_equal(out["output"].numpy(), batch["data"])
    net, _, out = _run({"output": {"class": "reinterpret_data", "set_axes": {"T": None}}})
    assert out["output"].time_dim is None
    with pytest.raises(LayerConfigError, match=r"\"set_axes\": unknown role 'X'"):
        build_network({"output": {"class": "reinterpret_data", "set_axes": {"X": "T"}}}, extern_data=EXTERN)
