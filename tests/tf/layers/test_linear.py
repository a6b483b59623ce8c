import numpy as np
import pytest

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
