import functools

import numpy as np
import pytest

from returnn.errors import LayerConfigError
from returnn.testing import build_network, random_batch, run_network

EXTERN = {"data": {"dim": 6}, "classes": {"dim": 4, "sparse": True}, "img": {"shape": (None, 4, 3)}}


_run = functools.partial(run_network, extern_data=EXTERN, n_batch=3, max_time=7)


def test_merge_dims_static_axes_like_numpy_reshape():
    net, batch, out = _run({"output": {"class": "merge_dims", "from": "data:img", "axes": ["S:1", "F"]}})
    y = out["output"]
    np.testing.assert_array_equal(y.numpy(), batch["img"].reshape(3, 7, 12))
    assert y.feature_dim.size == 12 and y.feature_dim is y.dims[2]
    np.testing.assert_array_equal(y.seq_lens.numpy(), batch.seq_lens("img"))


def test_merge_dims_time_and_feature_scales_lengths():
    _, batch, out = _run({"output": {"class": "merge_dims", "axes": ["T", "F"]}})
    y, lens = out["output"], batch.seq_lens("data")
    np.testing.assert_array_equal(y.seq_lens.numpy(), lens * 6)
    for b, n in enumerate(lens):
        np.testing.assert_array_equal(y.numpy()[b, :n * 6], batch["data"][b, :n].reshape(-1))


def test_merge_dims_errors_name_layer_and_option():
    with pytest.raises(LayerConfigError, match=r"layer 'output' \(class \"merge_dims\"\): \"axes\": axis 'X'"):
        build_network({"output": {"class": "merge_dims", "axes": ["X", "F"]}}, extern_data=EXTERN)
    with pytest.raises(LayerConfigError, match=r"\"axes\": a dynamic dim can only be merged as the major"):
        build_network({"output": {"class": "merge_dims", "axes": ["F", "T"], "keep_order": False}},
                      extern_data=EXTERN)


def test_split_dims_feature_and_time():
    _, batch, out = _run({"output": {"class": "split_dims", "axis": "F", "dims": [2, -1]}})
    y = out["output"]
    np.testing.assert_array_equal(y.numpy(), batch["data"].reshape(3, 7, 2, 3))
    assert y.feature_dim.size == 3 and y.feature_dim is y.dims[3]
    _, batch, out = _run({"output": {"class": "split_dims", "axis": "T", "dims": [-1, 2]}})
    y, lens = out["output"], batch.seq_lens("data")
    np.testing.assert_array_equal(y.seq_lens.numpy(), (lens + 1) // 2)
    padded = np.concatenate([batch["data"], np.zeros((3, 1, 6), np.float32)], axis=1)
    np.testing.assert_array_equal(y.numpy(), padded.reshape(3, 4, 2, 6))
    with pytest.raises(LayerConfigError, match=r"\"dims\": \[4, -1\] does not divide"):
        build_network({"output": {"class": "split_dims", "axis": "F", "dims": [4, -1]}}, extern_data=EXTERN)


def test_expand_dims_and_squeeze_round_trip():
    net, batch, out = _run({"exp": {"class": "expand_dims", "axis": "spatial", "dim": 2},
                            "output": {"class": "copy", "from": "exp"}})
    x = batch["data"]
    np.testing.assert_array_equal(out["exp"].numpy(), np.repeat(x[:, :, None], 2, axis=2))
    assert out["exp"].feature_dim is net.extern_data["data"].feature_dim
    _, batch, out = _run({"exp": {"class": "expand_dims", "axis": "F"},
                          "output": {"class": "squeeze", "from": "exp", "axis": "F"}})
    assert out["exp"].numpy().shape == (3, 7, 6, 1) and out["exp"].feature_dim.size == 1
    np.testing.assert_array_equal(out["output"].numpy(), batch["data"])
    with pytest.raises(LayerConfigError, match=r"\"axis\": can only squeeze static size-1 axes"):
        build_network({"output": {"class": "squeeze", "axis": "F"}}, extern_data=EXTERN)


def test_swap_axes_and_transpose_move_data_and_dims():
    net, batch, out = _run({"sw": {"class": "swap_axes", "axis1": "T", "axis2": "F"},
                            "output": {"class": "transpose", "from": "sw", "perm": {"T": "F", "F": "T"}}})
    data = net.extern_data["data"]
    np.testing.assert_array_equal(out["sw"].numpy(), batch["data"].transpose(0, 2, 1))
    assert out["sw"].dims == (data.dims[0], data.dims[2], data.dims[1])
    assert out["sw"].time_dim is data.time_dim
    np.testing.assert_array_equal(out["output"].numpy(), batch["data"])
    np.testing.assert_array_equal(out["output"].seq_lens.numpy(), batch.seq_lens("data"))
    with pytest.raises(LayerConfigError, match=r"\"perm\": .* is not a permutation"):
        build_network({"output": {"class": "transpose", "perm": {"T": "F"}}}, extern_data=EXTERN)


def test_split_parts_cover_the_axis():
    net, batch, out = _run({"output": {"class": "split", "axis": "F", "size_splits": [2, 4]}})
    layer = net.layers["output"]
    parts = layer.parts(out["output"])
    np.testing.assert_array_equal(parts[0].numpy(), batch["data"][..., :2])
    np.testing.assert_array_equal(parts[1].numpy(), batch["data"][..., 2:])
    assert [p.feature_dim.size for p in layer.part_templates] == [2, 4]
    assert [p.dims for p in parts] == [p.dims for p in layer.part_templates]
    second = layer.sub_layer_output(out["output"], "1")
    assert second.dims == layer.sub_layer_template("1").dims
    np.testing.assert_array_equal(second.numpy(), batch["data"][..., 2:])
    with pytest.raises(LayerConfigError, match=r"layer 'output' \(class \"split\"\): no sublayer '2'; the parts "
                                               r"are 'output/0', 'output/1'"):
        layer.sub_layer_template("2")
    with pytest.raises(LayerConfigError, match=r"\"size_splits\": \[2, 3\] do not add up"):
        build_network({"output": {"class": "split", "size_splits": [2, 3]}}, extern_data=EXTERN)


def test_split_parts_are_sources_of_other_layers():
    net = build_network({"s": {"class": "split", "axis": "F", "size_splits": [2, 3]},
                         "output": {"class": "concat", "from": [("s/1", "F"), ("s/0", "F")]}},
                        extern_data={"data": {"dim": 5}})
    batch = random_batch(net.extern_data, n_batch=3, max_time=4, seed=2)
    out = net.forward_function(["output"])(net.feed(batch))["output"].numpy()
    x = np.asarray(batch["data"])
    np.testing.assert_allclose(out, np.concatenate([x[..., 2:], x[..., :2]], axis=-1))
    with pytest.raises(LayerConfigError, match="no sublayer '2'"):
        build_network({"s": {"class": "split", "axis": "F", "size_splits": [2, 3]},
                       "output": {"class": "copy", "from": "s/2"}}, extern_data={"data": {"dim": 5}})
    with pytest.raises(LayerConfigError, match="layer 'c' has no sublayers"):
        build_network({"c": {"class": "copy"}, "output": {"class": "copy", "from": "c/0"}},
                      extern_data={"data": {"dim": 5}})
