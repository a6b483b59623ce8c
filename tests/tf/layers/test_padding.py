import functools

import numpy as np
import pytest

from returnn.errors import LayerConfigError
from returnn.testing import build_network, ragged_batch, rec_loop_dict, rec_unit_network, run_network

EXTERN = {"data": {"dim": 3}, "vec": {"shape": (3,), "time_dim_axis": None}}


_run = functools.partial(run_network, extern_data=EXTERN, n_batch=4, max_time=6)


def _check_per_seq(y, batch, want_fn):
    """Valid frames of each sequence equal ``want_fn(valid input frames, b)``; lengths too."""
    x, lens = batch["data"], batch.seq_lens("data")
    out_lens = y.seq_lens.numpy()
    for b in range(len(lens)):
        want = want_fn(x[b, :lens[b]], b)
        assert out_lens[b] == len(want)
        np.testing.assert_allclose(y.numpy()[b, :out_lens[b]], want, rtol=1e-6)


@pytest.mark.parametrize("mode, np_mode", [("constant", "constant"), ("reflect", "reflect"),
                                           ("symmetric", "symmetric"), ("replication", "edge")])
def test_pad_time_per_sequence_like_numpy(mode, np_mode):
    _, batch, out = _run({"output": {"class": "pad", "axes": "T", "padding": (2, 1), "mode": mode, "value": 0.5}},
                         pad_value=77.0)
    kwargs = {"constant_values": 0.5} if np_mode == "constant" else {}
    _check_per_seq(out["output"], batch, lambda v, b: np.pad(v, [(2, 1), (0, 0)], mode=np_mode, **kwargs))


def test_pad_feature_axis_static():
    _, batch, out = _run({"output": {"class": "pad", "axes": "F", "padding": 1, "value": -1.0}})
    np.testing.assert_array_equal(out["output"].numpy(), np.pad(batch["data"], [(0, 0), (0, 0), (1, 1)],
                                                                constant_values=-1.0))
    with pytest.raises(LayerConfigError, match=r"layer 'output' \(class \"pad\"\): \"padding\": expected"):
        build_network({"output": {"class": "pad", "axes": "T", "padding": (1, 2, 3)}}, extern_data=EXTERN)


def test_prefix_and_postfix_in_time():
    _, batch, out = _run({"output": {"class": "prefix_in_time", "prefix": 2.0, "repeat": 2}}, pad_value=9.0)
    _check_per_seq(out["output"], batch, lambda v, b: np.concatenate([np.full((2, 3), 2.0), v]))
    _, batch, out = _run({"output": {"class": "postfix_in_time", "postfix": "data:vec"}}, pad_value=9.0)
    _check_per_seq(out["output"], batch, lambda v, b: np.concatenate([v, batch["vec"][b][None]]))


def test_window_same_and_valid():
    _, batch, out = _run({"output": {"class": "window", "window_size": 3}}, pad_value=5.0)

    def same(v, b):
        p = np.pad(v, [(1, 1), (0, 0)])
        return np.stack([p[t:t + 3] for t in range(len(v))])
    _check_per_seq(out["output"], batch, same)
    _, batch, out = _run({"output": {"class": "window", "window_size": 2, "padding": "valid", "stride": 2}})
    _check_per_seq(out["output"], batch, lambda v, b: np.stack([v[t:t + 2] for t in range(0, len(v) - 1, 2)])
                   if len(v) > 1 else np.zeros((0, 2, 3)))
    with pytest.raises(LayerConfigError, match=r"\"window_left\" 3 \+ \"window_right\" None"):
        build_network({"output": {"class": "window", "window_size": 3, "window_left": 3}}, extern_data=EXTERN)


@pytest.mark.parametrize("amount", [1, -2])
def test_shift_axis_with_and_without_padding(amount):
    _, batch, out = _run({"output": {"class": "shift_axis", "axis": "T", "amount": amount}})
    x, lens = batch["data"], batch.seq_lens("data")
    y = out["output"]
    for b in range(4):
        shifted = np.zeros_like(x[b])
        if amount > 0:
            shifted[amount:] = x[b, :-amount]
        else:
            shifted[:amount] = x[b, -amount:]
        n = y.seq_lens.numpy()[b]
        assert n == np.clip(lens[b] + amount, 0, 6)
        np.testing.assert_array_equal(y.numpy()[b, :n], shifted[:n])
    _, batch, out = _run({"output": {"class": "shift_axis", "axis": "T", "amount": amount, "pad": False}})
    _check_per_seq(out["output"], batch, lambda v, b: v[:len(v) - abs(amount)] if amount > 0 else v[-amount:])


@pytest.mark.parametrize("opts", [{"window_right": 0}, {"window_left": 2}])
def test_window_in_loop_holds_last_frames_like_whole_sequence(opts):
    layer = {"class": "window", "from": "data", "window_size": 3, **opts}
    loop_net = build_network(rec_loop_dict({"output": {**layer, "from": "data:source"}}), extern_data=EXTERN)
    body = rec_unit_network(loop_net)
    assert body.templates["output"].batch_shape == (None, 3, 3)
    assert body.layers["output"].initial_state(4).shape == (4, 3, 3)
    batch = ragged_batch(np.random.default_rng(0), (4, 6, 3), [6, 2, 5, 1], "data")
    stepped = loop_net(batch)["output"].numpy().transpose(1, 0, 2, 3)  # [B, T, window, F]
    whole = build_network({"output": layer}, extern_data=EXTERN)(batch)["output"].numpy()
    valid = np.arange(6)[None, :] < batch["data:seq_len"][:, None]
    np.testing.assert_allclose(stepped[valid], whole[valid])
    np.testing.assert_array_equal(stepped[:, 0, :2], 0.0)  # nothing before the first step


def test_window_in_loop_errors_name_layer_and_option():
    def build(**opts):
        unit = {"output": {"class": "window", "from": "data:source", "window_size": 3, **opts}}
        return build_network(rec_loop_dict(unit), extern_data=EXTERN)

    with pytest.raises(LayerConfigError, match=r"layer 'output/output' \(class \"window\"\): inside a rec loop the "
                                               r"window can only look back: set \"window_right\": 0"):
        build()
    with pytest.raises(LayerConfigError, match=r"inside a rec loop: expected \"padding\" \"same\""):
        build(window_right=0, padding="valid")