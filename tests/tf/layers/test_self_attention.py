import numpy as np
import pytest
import tensorflow as tf

from returnn.errors import LayerConfigError
from returnn.tensor.dim import Dim, batch_dim, feature_dim
from returnn.testing import build_network, ragged_batch, rec_loop_dict, rec_unit_network, run_network

EXTERN = {"data": {"dim": 5}, "other": {"dim": 3}, "classes": {"dim": 7, "sparse": True}}
LENS = [6, 2, 4]


def _np_self_attention(x, lens, qkv, heads, key_dim, left_only):
    """Multi-head attention with RETURNN's QKV layout (per head: q, k, v columns), valid keys only."""
    n_batch, n_time = x.shape[:2]
    y = (x @ qkv).reshape(n_batch, n_time, heads, -1).transpose(0, 2, 1, 3)  # [B, H, T, c]
    d_k = key_dim // heads
    q, k, v = y[..., :d_k] / np.sqrt(d_k), y[..., d_k:2 * d_k], y[..., 2 * d_k:]
    energy = q @ k.transpose(0, 1, 3, 2)
    if left_only:
        mask = np.tril(np.ones((n_time, n_time), bool))[None, None]
    else:
        mask = (np.arange(n_time)[None, :] < np.asarray(lens)[:, None])[:, None, None, :]
    energy = np.where(mask, energy, -np.inf)
    w = np.exp(energy - energy.max(-1, keepdims=True))
    w /= w.sum(-1, keepdims=True)
    return (w @ v).transpose(0, 2, 1, 3).reshape(n_batch, n_time, -1)


@pytest.mark.parametrize("left_only", [False, True])
def test_self_attention_matches_numpy_on_valid_frames(left_only):
    layer = {"class": "self_attention", "num_heads": 2, "total_key_dim": 6, "n_out": 4,
             "attention_left_only": left_only}
    net, batch, out = run_network({"output": layer}, extern_data=EXTERN, max_time=6, pad_value=3.0)
    y, lens, mask = out["output"], batch.seq_lens("data"), batch.mask("data")
    assert y.dims[1] is net.extern_data["data"].time_dim and y.feature_dim.size == 4
    np.testing.assert_array_equal(y.seq_lens.numpy(), lens)
    qkv = net.layers["output"].QKV.numpy()
    assert qkv.shape == (5, 2 * 6 + 4)
    want = _np_self_attention(batch["data"], lens, qkv, 2, 6, left_only)
    np.testing.assert_allclose(y.numpy()[mask], want[mask], rtol=1e-5, atol=1e-6)


def test_self_attention_sparse_input_selects_rows_of_qkv():
    net, batch, out = run_network({"output": {"class": "self_attention", "from": "data:classes", "num_heads": 1,
                                              "total_key_dim": 2, "n_out": 3}}, extern_data=EXTERN, max_time=5)
    qkv = net.layers["output"].QKV.numpy()
    one_hot = np.eye(7, dtype="float32")[batch["classes"]]
    want = _np_self_attention(one_hot, batch.seq_lens("classes"), qkv, 1, 2, False)
    mask = batch.mask("classes")
    np.testing.assert_allclose(out["output"].numpy()[mask], want[mask], rtol=1e-5, atol=1e-6)


def test_self_attention_gradient_ignores_padded_frames():
    net = build_network({"output": {"class": "self_attention", "num_heads": 2, "total_key_dim": 4, "n_out": 4}},
                        extern_data=EXTERN)
    batch = ragged_batch(np.random.default_rng(3), (3, 6, 5), LENS, "data")
    x = tf.Variable(batch["data"])
    with tf.GradientTape() as tape:
        y = net(dict(batch, data=x))["output"]
        value = tf.reduce_sum(y.tensor * tf.cast(y.mask_broadcast(), tf.float32))
    grad = tape.gradient(value, x).numpy()
    valid = np.arange(6)[None, :] < np.asarray(LENS)[:, None]
    assert np.all(grad[~valid] == 0) and np.all(np.abs(grad[valid]).sum(-1) > 0)


def test_self_attention_in_loop_equals_causal_whole_sequence():
    """RETURNN's demo-tf-rec-self-att layer (with a second input frame instead of prev:output)."""
    layer = {"class": "self_attention", "attention_left_only": True, "num_heads": 4, "total_key_dim": 20, "n_out": 20}
    time = Dim(None, "time")  # both inputs share it: the loop reads a frame of each per step
    extern = {"data": {"dims": [batch_dim, time, feature_dim(5, "data:feature")]},
              "other": {"dims": [batch_dim, time, feature_dim(3, "other:feature")]}}
    loop_net = build_network(rec_loop_dict({"output": {**layer, "from": ["data:source", "data:other"]}}),
                             extern_data=extern)
    whole_net = build_network({"output": {**layer, "from": ["data", "data:other"]}}, extern_data=extern)
    assert whole_net.load_params({"output/QKV": loop_net.get_params()["output/output/QKV"]}) == ["output/QKV"]
    rng = np.random.default_rng(0)
    batch = {**ragged_batch(rng, (3, 6, 5), LENS, "data"), **ragged_batch(rng, (3, 6, 3), LENS, "other")}
    stepped = loop_net(batch)["output"].numpy().transpose(1, 0, 2)
    assert rec_unit_network(loop_net).templates["output"].batch_ndim == 2 and stepped.shape == (3, 6, 20)
    whole = whole_net(batch)["output"].numpy()
    valid = np.arange(6)[None, :] < np.asarray(LENS)[:, None]
    np.testing.assert_allclose(stepped[valid], whole[valid], rtol=1e-5, atol=1e-5)
    state = rec_unit_network(loop_net).layers["output"].initial_state(tf.constant(3))
    assert state["k_left"].shape == (3, 4, 0, 5) and state["v_left"].shape == (3, 4, 0, 5)


def test_self_attention_dropout_only_in_training():
    layer = {"class": "self_attention", "num_heads": 1, "total_key_dim": 2, "n_out": 2, "attention_dropout": 0.5}
    net = build_network({"output": layer}, extern_data=EXTERN)
    batch = ragged_batch(np.random.default_rng(1), (3, 6, 5), LENS, "data")
    eval_1, eval_2 = (net(batch, train=False)["output"].numpy() for _ in range(2))
    np.testing.assert_array_equal(eval_1, eval_2)
    assert not np.allclose(net(batch, train=True)["output"].numpy(), eval_1)


def test_self_attention_errors_name_layer_and_option():
    def build(extern=EXTERN, **opts):
        layer = {"class": "self_attention", "num_heads": 2, "total_key_dim": 4, "n_out": 4, **opts}
        return build_network({"output": layer}, extern_data=extern)

    where = r"layer 'output' \(class \"self_attention\"\): "
    with pytest.raises(LayerConfigError, match=where + r"\"total_key_dim\" 5 is not divisible by \"num_heads\" 2"):
        build(total_key_dim=5)
    with pytest.raises(LayerConfigError, match=where + r"\"n_out\" 3 is not divisible"):
        build(n_out=3)
    with pytest.raises(LayerConfigError, match=r"layer 'output/output' \(class \"self_attention\"\): "
                                               r"\"attention_left_only\": inside a rec loop"):
        build_network(rec_loop_dict({"output": {"class": "self_attention", "from": "data:source", "num_heads": 2,
                                                "total_key_dim": 4, "n_out": 4}}), extern_data=EXTERN)
    with pytest.raises(LayerConfigError, match=where + r"\"key_shift\": not supported"):
        build(key_shift="rel")
    with pytest.raises(LayerConfigError, match=where + r"expected input \[B, T, F\]"):
        build({"data": {"shape": (None, 2, 5)}})
    with pytest.raises(LayerConfigError, match=where + r"missing required option \"num_heads\""):
        build_network({"output": {"class": "self_attention", "total_key_dim": 4, "n_out": 4}}, extern_data=EXTERN)
