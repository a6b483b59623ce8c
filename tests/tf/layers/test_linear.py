import numpy as np
import pytest
import tensorflow as tf

from returnn.errors import LayerConfigError
from returnn.tensor.dim import feature_dim
from returnn.testing import build_network, random_batch

EXTERN = {"data": {"dim": 5}, "classes": {"dim": 4, "sparse": True}}


def test_linear_matches_numpy_on_valid_frames():
    net = build_network({"out": {"class": "linear", "from": "data", "n_out": 3, "activation": "tanh",
                                 "is_output_layer": True}}, extern_data=EXTERN)
    batch = random_batch(net.extern_data, n_batch=3, max_time=6, seed=1)
    out = net(batch, train=False)["out"]
    layer = net.layers["out"]
    assert out.dims == layer.out.dims
    want = np.tanh(batch["data"] @ layer.W.numpy() + layer.b.numpy())
    valid = batch.mask("data")
    np.testing.assert_allclose(out.numpy()[valid], want[valid], rtol=1e-5)


def test_linear_aliases_without_bias_and_out_dim():
    dim = feature_dim(6, "hidden")
    for cls in ("hidden", "forward"):
        net = build_network({"output": {"class": cls, "out_dim": dim, "with_bias": False,
                                        "forward_weights_init": "random_normal(stddev=0.5)"}}, extern_data=EXTERN)
        assert net.layers["output"].b is None and net.templates["output"].feature_dim is dim
        assert sorted(net.get_params()) == ["output/W"]
        assert 0.3 < net.layers["output"].W.numpy().std() < 0.7


def test_linear_time_major_input_and_init_constant():
    net = build_network({"tm": {"class": "linear", "n_out": 2, "forward_weights_init": 1.0, "bias_init": 0.5},
                         "output": {"class": "linear", "from": "tm", "n_out": 1, "forward_weights_init": 1.0}},
                        extern_data=EXTERN)
    batch = random_batch(net.extern_data, seed=4)
    out = net(batch)["output"].numpy()[..., 0]
    np.testing.assert_allclose(out, 2 * (batch["data"].sum(-1) + 0.5), rtol=1e-5)


def test_linear_on_sparse_input_selects_rows():
    net = build_network({"output": {"class": "linear", "from": "data:classes", "n_out": 3}}, extern_data=EXTERN)
    batch = random_batch(net.extern_data, seed=2)
    layer = net.layers["output"]
    want = layer.W.numpy()[batch["classes"]] + layer.b.numpy()
    np.testing.assert_allclose(net(batch)["output"].numpy(), want, rtol=1e-6)


def test_linear_takes_n_out_from_an_explicit_target_without_a_loss():
    net = build_network({"output": {"class": "softmax", "from": "data", "target": "classes"}}, extern_data=EXTERN)
    assert net.templates["output"].dim == 4


def test_linear_needs_n_out():
    with pytest.raises(LayerConfigError, match=r"layer 'output' \(class \"linear\"\): needs \"n_out\" or \"out_dim\""):
        build_network({"output": {"class": "linear"}}, extern_data=EXTERN)
    with pytest.raises(LayerConfigError, match=r"initializer 'glorot_unifrom': unknown"):
        build_network({"output": {"class": "linear", "n_out": 2, "forward_weights_init": "glorot_unifrom"}},
                      extern_data=EXTERN)


def test_softmax_takes_dim_from_target_and_keeps_logits():
    net = build_network({"output": {"class": "softmax", "loss": "ce"}}, extern_data=EXTERN)
    assert net.templates["output"].feature_dim is net.extern_data["classes"].sparse_dim
    batch = random_batch(net.extern_data, seed=5)
    out = net(batch)["output"]
    layer = net.layers["output"]
    logits = batch["data"] @ layer.W.numpy() + layer.b.numpy()
    want = np.exp(logits) / np.exp(logits).sum(-1, keepdims=True)
    np.testing.assert_allclose(out.numpy(), want, rtol=1e-5)
    np.testing.assert_allclose(out.logits.numpy(), logits, rtol=1e-5)


def test_embedding_is_a_lookup_and_needs_sparse_input():
    net = build_network({"output": {"class": "embedding", "from": "data:classes", "n_out": 3}}, extern_data=EXTERN)
    batch = random_batch(net.extern_data, seed=6)
    assert sorted(net.get_params()) == ["output/W"]
    np.testing.assert_array_equal(net(batch)["output"].numpy(), net.layers["output"].W.numpy()[batch["classes"]])
    with pytest.raises(LayerConfigError, match="needs sparse input"):
        build_network({"output": {"class": "embedding", "n_out": 3}}, extern_data=EXTERN)


def test_linear_param_init_applies_without_forward_weights_init():
    net = build_network({"output": {"class": "linear", "n_out": 2, "param_init": 0.0}}, extern_data=EXTERN)
    assert (net.layers["output"].W.numpy() == 0).all() and (net.layers["output"].b.numpy() == 0).all()


def _filtered_grad_reference(x, g, threshold):
    """dW of sum(out * g) for out = x @ W + b, where batch entries with max(g**2) >= threshold are dropped."""
    keep = (g ** 2).reshape(len(g), -1).max(axis=1) < threshold
    return np.einsum("bti,bto->io", x[keep], g[keep]), g[keep].sum(axis=(0, 1))


@pytest.mark.parametrize("cls", ["linear", "softmax"])
def test_linear_grad_filter_drops_sequences_with_large_gradients(cls):
    net = build_network({"output": {"class": cls, "n_out": 3, "grad_filter": 1.0}}, extern_data=EXTERN)
    layer = net.layers["output"]
    batch = random_batch(net.extern_data, n_batch=3, max_time=4, seed=7)
    g = np.random.default_rng(0).uniform(-0.5, 0.5, size=(3, 4, 3)).astype(np.float32)
    g[1, 2, 0] = 1.0  # square 1.0: not below the threshold, so sequence 1 gets no gradient
    g[2, 0, 1] = -0.99  # square 0.98: kept
    with tf.GradientTape() as tape:
        out = net(batch, train=True)["output"]
        pre_activation = out.tensor if cls == "linear" else out.logits  # the filter sits before the activation
    d_w, d_b = tape.gradient(pre_activation, [layer.W, layer.b], output_gradients=tf.constant(g))
    want_w, want_b = _filtered_grad_reference(batch["data"], g, 1.0)
    np.testing.assert_allclose(d_w.numpy(), want_w, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(d_b.numpy(), want_b, rtol=1e-5, atol=1e-6)
    assert np.abs(want_w - _filtered_grad_reference(batch["data"], g, 10.0)[0]).max() > 1e-3  # something was dropped
    plain = build_network({"output": {"class": cls, "n_out": 3}}, extern_data=EXTERN)
    np.testing.assert_allclose(out.numpy(), plain(batch)["output"].numpy(), rtol=1e-6)  # forward unchanged


def test_linear_grad_filter_must_not_be_negative():
    with pytest.raises(LayerConfigError, match=r'"grad_filter": expected a threshold >= 0'):
        build_network({"output": {"class": "linear", "n_out": 2, "grad_filter": -1.0}}, extern_data=EXTERN)
