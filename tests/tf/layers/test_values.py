import functools

import numpy as np
import pytest

from returnn.errors import LayerConfigError
from returnn.testing import build_network, run_network

EXTERN = {"data": {"dim": 3}, "classes": {"dim": 4, "sparse": True}}


_run = functools.partial(run_network, extern_data=EXTERN, n_batch=4, max_time=6)


def test_constant_value_dtype_shape_and_broadcast_add():
    net, batch, out = _run({"c": {"class": "constant", "value": [1.0, 2.0, 3.0]},
                            "output": {"class": "combine", "kind": "add", "from": ["data", "c"]}})
    np.testing.assert_allclose(out["output"].numpy(), batch["data"] + np.array([1, 2, 3]), rtol=1e-6)
    _, _, out = _run({"output": {"class": "constant", "value": 7, "dtype": "int64", "shape": [2, 3]}})
    assert out["output"].numpy().dtype == np.int64
    np.testing.assert_array_equal(out["output"].numpy(), np.full((2, 3), 7))
    _, _, out = _run({"output": {"class": "constant", "value": 0.5, "with_batch_dim": True}}, n_batch=5)
    np.testing.assert_array_equal(out["output"].numpy(), np.full((5,), 0.5, np.float32))
    with pytest.raises(LayerConfigError, match=r"layer 'output' \(class \"constant\"\): \"value\""):
        build_network({"output": {"class": "constant", "value": [1, 2], "shape": [3]}}, extern_data=EXTERN)


def test_variable_param_named_after_layer_with_batch_and_time_axes():
    net, batch, out = _run({"output": {"class": "variable", "shape": [3], "init": 0.25, "add_batch_axis": True,
                                       "add_time_axis": True}})
    assert sorted(net.get_params()) == ["output/output"]
    np.testing.assert_array_equal(out["output"].numpy(), np.full((4, 1, 3), 0.25, np.float32))
    assert net.layers["output"].var.trainable
    with pytest.raises(LayerConfigError, match=r"missing required option \"shape\""):
        build_network({"output": {"class": "variable"}}, extern_data=EXTERN)


def test_range_and_range_in_axis():
    _, _, out = _run({"output": {"class": "range", "limit": 10, "start": 2, "delta": 3}})
    np.testing.assert_array_equal(out["output"].numpy(), np.arange(2, 10, 3))
    _, _, out = _run({"output": {"class": "range", "limit": 1.0, "delta": 0.25}})
    np.testing.assert_allclose(out["output"].numpy(), np.arange(0, 1.0, 0.25))
    net, batch, out = _run({"output": {"class": "range_in_axis", "axis": "T"}})
    np.testing.assert_array_equal(out["output"].numpy(), np.arange(6))
    np.testing.assert_array_equal(out["output"].seq_lens.numpy(), batch.seq_lens("data"))
    _, batch, out = _run({"output": {"class": "range_in_axis", "axis": "F", "keepdims": True}})
    np.testing.assert_array_equal(out["output"].numpy(), np.broadcast_to(np.arange(3), (4, 6, 3)))
    with pytest.raises(LayerConfigError, match=r"\"delta\": must not be 0"):
        build_network({"output": {"class": "range", "limit": 3, "delta": 0}}, extern_data=EXTERN)


def test_length_of_time_and_static_axis():
    _, batch, out = _run({"output": {"class": "length", "axis": "T"}})
    np.testing.assert_array_equal(out["output"].numpy(), batch.seq_lens("data"))
    _, batch, out = _run({"output": {"class": "length", "axis": "F"}})
    np.testing.assert_array_equal(out["output"].numpy(), [3, 3, 3, 3])
    with pytest.raises(LayerConfigError, match=r"layer 'output' \(class \"length\"\): \"axis\""):
        build_network({"output": {"class": "length", "axis": "W"}}, extern_data=EXTERN)


def test_range_axis_is_the_feature_axis_as_in_returnn():
    net = build_network({"r": {"class": "range", "limit": 5, "start": 1},
                         "output": {"class": "reduce", "mode": "sum", "axes": "F", "from": "r"}},
                        extern_data={"data": {"dim": 3}})
    assert net.templates["r"].feature_dim is not None and net.templates["output"].dims == ()
    out = net({"data": np.zeros([1, 2, 3], np.float32), "data:seq_len": np.array([2], np.int32)})["output"]
    assert int(out.numpy()) == 1 + 2 + 3 + 4
