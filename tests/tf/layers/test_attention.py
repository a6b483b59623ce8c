import functools
import math

import numpy as np
import pytest
import tensorflow as tf

from returnn.errors import LayerConfigError
from returnn.testing import (build_network, ragged_batch, random_batch, rec_loop_dict, rec_unit_network,
                             run_network)

EXTERN = {"data": {"dim": 4}, "enc": {"dim": 4}, "classes": {"dim": 3, "sparse": True},
          "off": {"shape": (), "dtype": "int32"}}


_run = functools.partial(run_network, extern_data=EXTERN, n_batch=3, max_time={"data": 5, "enc": 7, "classes": 5, "off": 1})


def test_dot_attention_energies_query_times_keys():
    net, batch, out = _run({"output": {"class": "dot", "from": ["data", "data:enc"], "red1": "F", "red2": "F",
                                       "var1": "T", "var2": "T"}})
    y = out["output"]
    q, k = batch["data"], batch["enc"]
    want = np.einsum("bqf,bkf->bqk", q, k)
    assert y.numpy().shape == (3, 5, 7)
    q_len, k_len = batch.seq_lens("data"), batch.seq_lens("enc")
    for b in range(3):
        np.testing.assert_allclose(y.numpy()[b, :q_len[b], :k_len[b]], want[b, :q_len[b], :k_len[b]], rtol=1e-5)
    assert y.dims[1] is net.extern_data["data"].time_dim and y.dims[2] is net.extern_data["enc"].time_dim


def test_dot_self_attention_same_time_dim_gets_two_axes():
    _, batch, out = _run({"output": {"class": "dot", "from": ["data", "data"], "red1": "F", "red2": "F",
                                     "var1": "T", "var2": "T"}})
    y = out["output"]
    assert y.dims[1] is not y.dims[2]
    np.testing.assert_array_equal(y.dyn_sizes[y.dims[2]].numpy(), batch.seq_lens("data"))
    np.testing.assert_allclose(y.numpy(), np.einsum("bqf,bkf->bqk", batch["data"], batch["data"]), rtol=1e-5)


def test_dot_weighted_sum_over_time_ignores_padding():
    _, batch, out = _run({"w": {"class": "softmax_over_spatial", "from": "data:enc"},
                          "output": {"class": "dot", "from": ["w", "data:enc"], "reduce": "T"}}, pad_value=1e3)
    x, lens = batch["enc"], batch.seq_lens("enc")
    y = out["output"]
    assert y.numpy().shape == (3, 4)  # F is in both sources: shared, like the batch
    for b in range(3):
        v = x[b, :lens[b]]
        w = np.exp(v - v.max(0)) / np.exp(v - v.max(0)).sum(0)
        np.testing.assert_allclose(y.numpy()[b], np.einsum("tf,tf->f", w, v), rtol=1e-4)
    with pytest.raises(LayerConfigError, match=r"layer 'output' \(class \"dot\"\): \"red1\" / \"red2\": cannot "
                                               r"reduce"):
        build_network({"a": {"class": "linear", "n_out": 3},
                       "output": {"class": "dot", "from": ["a", "data"], "red1": "F", "red2": "F"}},
                      extern_data=EXTERN)


def test_softmax_over_spatial_masks_padding():
    _, batch, out = _run({"e": {"class": "reduce", "from": "data:enc", "mode": "sum", "axes": "F"},
                          "output": {"class": "softmax_over_spatial", "from": "e", "energy_factor": 0.5}},
                         pad_value=50.0)
    y, lens = out["output"].numpy(), batch.seq_lens("enc")
    energies = batch["enc"].sum(-1) * 0.5
    for b in range(3):
        e = energies[b, :lens[b]]
        np.testing.assert_allclose(y[b, :lens[b]], np.exp(e - e.max()) / np.exp(e - e.max()).sum(), rtol=1e-5)
        assert (y[b, lens[b]:] == 0).all()
    with pytest.raises(LayerConfigError, match=r"layer 'output' \(class \"softmax_over_spatial\"\): \"axis\""):
        build_network({"output": {"class": "softmax_over_spatial", "axis": "B"}}, extern_data=EXTERN)


def _np_encoding(positions, n):
    half = n // 2
    inv = np.exp(np.arange(half) * -(math.log(1e4) / max(half - 1, 1)))
    scaled = np.asarray(positions, np.float64)[..., None] * inv
    return np.concatenate([np.sin(scaled), np.cos(scaled)], -1)


def test_positional_encoding_table_add_to_input_and_offset():
    _, batch, out = _run({"output": {"class": "positional_encoding", "n_out": 6}})
    np.testing.assert_allclose(out["output"].numpy(), _np_encoding(np.arange(5), 6), rtol=1e-5, atol=1e-6)
    _, batch, out = _run({"output": {"class": "positional_encoding", "add_to_input": True}})
    np.testing.assert_allclose(out["output"].numpy(), batch["data"] + _np_encoding(np.arange(5), 4), rtol=1e-5,
                               atol=1e-6)
    _, batch, out = _run({"output": {"class": "positional_encoding", "n_out": 4, "offset": "data:off"}})
    pos = np.arange(5)[None] + batch["off"][:, None]
    np.testing.assert_allclose(out["output"].numpy(), _np_encoding(pos, 4), rtol=1e-5, atol=1e-5)
    _, batch, out = _run({"output": {"class": "positional_encoding", "n_out": 4, "constant": 3}})
    np.testing.assert_allclose(out["output"].numpy(), _np_encoding(np.full(5, 3), 4), rtol=1e-5, atol=1e-6)
    with pytest.raises(LayerConfigError, match=r"\"add_to_input\": needs dense input"):
        build_network({"output": {"class": "positional_encoding", "from": "data:classes", "add_to_input": True}},
                      extern_data=EXTERN)


def test_attention_gradient_ignores_padded_keys():
    net = build_network({"e": {"class": "dot", "from": ["data", "data:enc"], "red1": "F", "red2": "F", "var1": "T",
                               "var2": "T"},
                         "w": {"class": "softmax_over_spatial", "from": "e", "axis": "stag:enc:time"},
                         "output": {"class": "dot", "from": ["w", "data:enc"], "red1": "stag:enc:time",
                                    "red2": "T", "var1": "stag:data:time", "var2": "F"}}, extern_data=EXTERN)
    batch = random_batch(net.extern_data, n_batch=3, max_time={"data": 4, "enc": 6, "classes": 4, "off": 1}, seed=7)
    enc = tf.Variable(batch["enc"])
    with tf.GradientTape() as tape:
        out = net(dict(batch, enc=enc))["output"]
        assert out.numpy().shape == (3, 4, 4)
        value = tf.reduce_sum(out.tensor * tf.cast(out.mask_broadcast(), tf.float32))
    grad = tape.gradient(value, enc).numpy()
    mask = batch.mask("enc")
    assert np.all(grad[~mask] == 0) and np.any(grad[mask] != 0)


def test_softmax_over_spatial_start_and_window():
    _, batch, out = _run({"e": {"class": "reduce", "from": "data:enc", "mode": "sum", "axes": "F"},
                          "output": {"class": "softmax_over_spatial", "from": "e", "start": "data:off"}})
    y, lens, start = out["output"].numpy(), batch.seq_lens("enc"), batch["off"]
    energies = batch["enc"].sum(-1)
    for b in range(3):
        keep = (np.arange(7) >= start[b]) & (np.arange(7) < lens[b])
        want = np.where(keep, np.exp(energies[b] - energies[b][keep].max()), 0.0) if keep.any() else np.zeros(7)
        np.testing.assert_allclose(y[b], want / max(want.sum(), 1e-30), rtol=1e-5, atol=1e-7)
    _, batch, out = _run({"e": {"class": "reduce", "from": "data:enc", "mode": "sum", "axes": "F"},
                          "output": {"class": "softmax_over_spatial", "from": "e", "window_start": 1,
                                     "window_size": 2}}, max_time={"data": 5, "enc": 7, "classes": 5, "off": 1})
    y = out["output"].numpy()
    assert np.all(y[:, 0] == 0) and np.all(y[:, 3:] == 0)
    np.testing.assert_allclose(y.sum(-1), np.where(batch.seq_lens("enc") > 1, 1.0, 0.0), rtol=1e-5)
    with pytest.raises(LayerConfigError, match=r"\"window_start\" and \"window_size\" go together"):
        build_network({"output": {"class": "softmax_over_spatial", "window_size": 2}}, extern_data=EXTERN)


def test_softmax_over_spatial_fully_masked_row_has_finite_gradient():
    net = build_network({"e": {"class": "reduce", "from": "data:enc", "mode": "sum", "axes": "F"},
                         "output": {"class": "softmax_over_spatial", "from": "e", "window_start": 20,
                                    "window_size": 2, "log_space": True}}, extern_data=EXTERN)
    batch = random_batch(net.extern_data, n_batch=2, max_time=4, seed=1)
    enc = tf.Variable(batch["enc"])
    with tf.GradientTape() as tape:
        y = net(dict(batch, enc=enc))["output"].tensor
        value = tf.reduce_sum(tf.where(tf.math.is_finite(y), y, 0.0))
    assert np.all(np.isneginf(y.numpy()))
    assert np.all(tape.gradient(value, enc).numpy() == 0)


def test_dot_with_unbatched_variable_is_a_linear_map():
    net, batch, out = _run({"w": {"class": "variable", "shape": [4, 2], "init": "glorot_uniform"},
                            "output": {"class": "dot", "from": ["data", "w"], "red1": "F", "red2": "S:0"}})
    w = net.layers["w"].var.numpy()
    np.testing.assert_allclose(out["output"].numpy(), batch["data"] @ w, rtol=1e-5, atol=1e-6)
    assert out["output"].numpy().shape == (3, 5, 2) and out["output"].feature_dim.size == 2


LOOP_EXTERN = {"data": {"dim": 4}, "enc": {"dim": 6}, "off": {"shape": (), "dtype": "int32"}}
ENC_LENS = [7, 3, 5]


def _loop_batch(seed, n_time=4):
    rng = np.random.default_rng(seed)
    batch = {**ragged_batch(rng, (3, n_time, 4), [n_time] * 3, "data"), **ragged_batch(rng, (3, 7, 6), ENC_LENS, "enc")}
    batch["enc"][~(np.arange(7)[None, :] < np.asarray(ENC_LENS)[:, None])] = 100.0  # padding that must not count
    return batch


def test_dot_softmax_generic_attention_on_loop_frames():
    """The RETURNN decoder pattern inside a rec loop: a [B, F] query against base [B, T_enc, F]."""
    net = build_network(rec_loop_dict({
        "q": {"class": "linear", "from": "data:source", "n_out": 6},
        "energy": {"class": "dot", "from": ["base:data:enc", "q"], "red1": "F", "red2": "F", "var1": "T",
                   "var2": None},
        "att_weights": {"class": "softmax_over_spatial", "from": "energy", "is_output_layer": True},
        "output": {"class": "generic_attention", "weights": "att_weights", "base": "base:data:enc"}}),
        extern_data=LOOP_EXTERN)
    body, enc_time = rec_unit_network(net), net.extern_data["enc"].time_dim
    assert [t.describe() for t in (body.templates["att_weights"], body.templates["output"])] == [
        "'att_weights' [B,'enc:time']", "'output' [B,'enc:feature'(6)]"]
    assert body.templates["att_weights"].dims[1] is enc_time
    batch = _loop_batch(0)
    out = net(batch)
    weights = out["output/att_weights"].numpy().transpose(1, 0, 2)  # [B, T_dec, T_enc]
    valid = np.arange(7)[None, :] < np.asarray(ENC_LENS)[:, None]
    np.testing.assert_allclose(weights.sum(-1), 1.0, rtol=1e-5)
    assert np.all(weights.transpose(0, 2, 1)[~valid] == 0)
    q = batch["data"] @ body.layers["q"].W.numpy() + body.layers["q"].b.numpy()
    energy = np.einsum("bqf,btf->bqt", q, np.where(valid[..., None], batch["enc"], 0.0))
    want = np.exp(energy - np.where(valid[:, None], energy, -np.inf).max(-1, keepdims=True)) * valid[:, None]
    want /= want.sum(-1, keepdims=True)
    np.testing.assert_allclose(weights, want, rtol=1e-4, atol=1e-6)
    np.testing.assert_allclose(out["output"].numpy().transpose(1, 0, 2),
                               np.einsum("bqt,btf->bqf", want, np.where(valid[..., None], batch["enc"], 0.0)),
                               rtol=1e-4)


def test_generic_attention_squeezes_size_one_weights_and_keeps_query_time():
    net, batch, out = _run({"e": {"class": "linear", "from": "data:enc", "n_out": 1},  # [B, T_enc, 1]
                            "w": {"class": "softmax_over_spatial", "from": "e"},
                            "output": {"class": "generic_attention", "weights": "w", "base": "data:enc"}})
    assert out["output"].numpy().shape == (3, 4)
    w = out["w"].numpy()[..., 0]
    np.testing.assert_allclose(out["output"].numpy(), np.einsum("bt,btf->bf", w, batch["enc"]), rtol=1e-5)
    net, batch, out = _run({"e": {"class": "dot", "from": ["data", "data:enc"], "red1": "F", "red2": "F",
                                  "var1": "T", "var2": "T"},
                            "w": {"class": "softmax_over_spatial", "from": "e", "axis": "stag:enc:time"},
                            "output": {"class": "generic_attention", "weights": "w", "base": "data:enc"}})
    y = out["output"]
    assert y.dims[1] is net.extern_data["data"].time_dim and y.numpy().shape == (3, 5, 4)
    mask = batch.mask("data")  # padded query frames are 0
    want = np.einsum("bqt,btf->bqf", out["w"].numpy(), batch["enc"])
    np.testing.assert_allclose(y.numpy()[mask], want[mask], rtol=1e-5)


def test_generic_attention_errors_name_layer_and_option():
    where = r"layer 'output' \(class \"generic_attention\"\): "
    with pytest.raises(LayerConfigError, match=where + r"takes no \"from\""):
        build_network({"output": {"class": "generic_attention", "from": "data", "weights": "data", "base": "data"}},
                      extern_data=EXTERN)
    with pytest.raises(LayerConfigError, match=where + r"\"weights\": required"):
        build_network({"output": {"class": "generic_attention", "base": "data:enc"}}, extern_data=EXTERN)
    with pytest.raises(LayerConfigError, match=where + r"\"weights\": .* has neither the time dim"):
        build_network({"w": {"class": "reduce", "from": "data", "mode": "sum", "axes": "T"},
                       "output": {"class": "generic_attention", "weights": "w", "base": "data:enc"}},
                      extern_data=EXTERN)


@pytest.mark.parametrize("opts", [{"n_out": 6}, {"n_out": 4, "offset": "data:off"}, {"add_to_input": True},
                                  {"n_out": 4, "constant": 3}])
def test_positional_encoding_in_loop_equals_whole_sequence_frame(opts):
    layer = {"class": "positional_encoding", "from": "data", **opts}
    loop_net = build_network(rec_loop_dict({"output": {**layer, "from": "data:source"}}), extern_data=LOOP_EXTERN)
    step_layer = rec_unit_network(loop_net).layers["output"]
    assert step_layer.initial_state(3) == ()
    batch = _loop_batch(1, n_time=5)
    batch.update({"off": np.array([0, 2, 7], np.int32)})  # no time axis: the loop reads it whole at each step
    stepped = loop_net(batch)["output"].numpy().transpose(1, 0, 2)
    assert stepped.shape == (3, 5, 6 if opts.get("n_out") == 6 else 4)
    _, _, whole = _run({"output": layer}, max_time={"data": 5, "enc": 7, "classes": 5, "off": 1}, check_output=False)
    positions = np.arange(5)[None, :] + (batch["off"][:, None] if "offset" in opts else 0)
    positions = np.full((1, 5), 3) if "constant" in opts else positions
    want = _np_encoding(positions, stepped.shape[-1]) + (batch["data"] if opts.get("add_to_input") else 0.0)
    np.testing.assert_allclose(stepped, np.broadcast_to(want, stepped.shape), rtol=1e-5, atol=1e-5)
    if not opts.get("add_to_input") and "offset" not in opts:
        np.testing.assert_allclose(stepped[0], whole["output"].numpy(), rtol=1e-5, atol=1e-6)
    with pytest.raises(LayerConfigError, match=r"runs through step"):
        step_layer(step_layer.ctx.sources, train=False)
