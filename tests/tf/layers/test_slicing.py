import functools

import numpy as np
import pytest

from returnn.errors import LayerConfigError
from returnn.testing import build_network, run_network

EXTERN = {"data": {"dim": 5}, "classes": {"dim": 4, "sparse": True}, "pos": {"shape": (), "dtype": "int32"},
          "idx": {"shape": (None,), "dtype": "int32"}}


_run = functools.partial(run_network, extern_data=EXTERN, n_batch=4, max_time=7)


def _per_seq(y, lens, want_fn, x, x_lens):
    for b in range(len(x_lens)):
        want = want_fn(x[b, :x_lens[b]])
        assert lens[b] == len(want), (b, lens[b], len(want))
        np.testing.assert_array_equal(y[b, :lens[b]], want)


@pytest.mark.parametrize("start, end, step", [(1, None, None), (None, -2, None), (-3, None, None), (1, 6, 2),
                                              (0, None, 3)])
def test_slice_time_per_sequence_like_python(start, end, step):
    _, batch, out = _run({"output": {"class": "slice", "axis": "T", "slice_start": start, "slice_end": end,
                                     "slice_step": step}}, pad_value=99.0)
    y = out["output"]
    _per_seq(y.numpy(), y.seq_lens.numpy(), lambda v: v[start:end:step], batch["data"], batch.seq_lens("data"))


def test_slice_feature_axis_static():
    net, batch, out = _run({"output": {"class": "slice", "axis": "F", "slice_start": 1, "slice_end": -1}})
    np.testing.assert_array_equal(out["output"].numpy(), batch["data"][..., 1:-1])
    assert out["output"].feature_dim.size == 3
    _, batch, out = _run({"output": {"class": "slice", "axis": "F", "slice_step": -2}})
    np.testing.assert_array_equal(out["output"].numpy(), batch["data"][..., ::-2])
    _, batch, out = _run({"output": {"class": "slice", "axis": "F", "slice_start": 0}})
    assert out["output"].feature_dim is batch.templates["data"].feature_dim
    with pytest.raises(LayerConfigError, match=r"\"slice_step\": expected a non-zero int \(positive on dynamic"):
        build_network({"output": {"class": "slice", "axis": "T", "slice_step": -1}}, extern_data=EXTERN)
    with pytest.raises(LayerConfigError, match=r"layer 'output' \(class \"slice\"\): \"axis\": axis 'G'"):
        build_network({"output": {"class": "slice", "axis": "G", "slice_start": 1}}, extern_data=EXTERN)


def test_slice_nd_per_batch_start_and_size():
    _, batch, out = _run({"output": {"class": "slice_nd", "start": "data:pos", "size": 3}})
    x, lens, pos = batch["data"], batch.seq_lens("data"), batch["pos"]
    y = out["output"].numpy()
    assert y.shape == (4, 3, 5)
    for b in range(4):
        for t in range(3):
            p = pos[b] + t
            np.testing.assert_array_equal(y[b, t], x[b, p] if p < lens[b] else np.zeros(5))


def test_slice_nd_without_size_runs_to_sequence_end():
    _, batch, out = _run({"output": {"class": "slice_nd", "start": "data:pos"}})
    y, lens, pos = out["output"], batch.seq_lens("data"), batch["pos"]
    np.testing.assert_array_equal(y.seq_lens.numpy(), np.maximum(lens - pos, 0))
    for b in range(4):
        np.testing.assert_array_equal(y.numpy()[b, :lens[b] - pos[b]], batch["data"][b, pos[b]:lens[b]])


def test_slice_nd_start_per_frame():
    net, batch, out = _run({"output": {"class": "slice_nd", "start": "data:idx", "size": 2}}, seed=3)
    x, idx = batch["data"], batch["idx"]
    lens = batch.seq_lens("data")
    y = out["output"].numpy()
    assert y.shape == (4, 7, 2, 5)
    for b in range(4):
        for t in range(lens[b]):
            for s in range(2):
                p = idx[b, t] + s
                np.testing.assert_array_equal(y[b, t, s], x[b, p] if p < lens[b] else 0)
    with pytest.raises(LayerConfigError, match=r"\"start\": expected int positions"):
        build_network({"output": {"class": "slice_nd", "start": "data", "size": 2}}, extern_data=EXTERN)


def test_gather_with_position_layer_and_int():
    _, batch, out = _run({"output": {"class": "gather", "position": "data:pos", "axis": "T"}})
    x, pos = batch["data"], batch["pos"]
    np.testing.assert_array_equal(out["output"].numpy(), x[np.arange(4), np.minimum(pos, 6)])
    _, batch, out = _run({"output": {"class": "gather", "position": -1, "axis": "T"}}, pad_value=50.0)
    lens = batch.seq_lens("data")
    np.testing.assert_array_equal(out["output"].numpy(), batch["data"][np.arange(4), lens - 1])
    _, batch, out = _run({"output": {"class": "gather", "position": 2, "axis": "F"}})
    np.testing.assert_array_equal(out["output"].numpy(), batch["data"][..., 2])


def test_gather_frames_by_index_sequence():
    net, batch, out = _run({"output": {"class": "gather", "from": "data:classes", "position": "data:idx",
                                       "axis": "T"}}, seed=4)
    want = np.take_along_axis(batch["classes"], np.clip(batch["idx"], 0, 6), axis=1)
    np.testing.assert_array_equal(out["output"].numpy(), want)
    assert out["output"].sparse_dim is net.extern_data["classes"].sparse_dim
    with pytest.raises(LayerConfigError, match=r"\"position\": 9 out of range"):
        build_network({"output": {"class": "gather", "position": 9, "axis": "F"}}, extern_data=EXTERN)
