import math

import numpy as np
import pytest
import tensorflow as tf

from returnn.errors import LayerConfigError
from returnn.testing import build_network, random_batch

EXTERN = {"data": {"dim": 4}, "enc": {"dim": 4}, "classes": {"dim": 3, "sparse": True},
          "off": {"shape": (), "dtype": "int32"}}


def _run(net_dict, *, seed=0, pad_value=0.0, max_time=None):
    net = build_network(net_dict, extern_data=EXTERN)
    batch = random_batch(net.extern_data, n_batch=3, max_time=max_time or {"data": 5, "enc": 7, "classes": 5, "off": 1},
                         seed=seed, pad_value=pad_value)
    out = net(batch)
    assert out["output"].dims == net.templates["output"].dims
    return net, batch, out


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
