import numpy as np
import pytest
import tensorflow as tf

from returnn.errors import LayerConfigError
from returnn.testing import build_network, random_batch

EXTERN = {"data": {"dim": 3}, "classes": {"dim": 4, "sparse": True}}


def _valid_frames(batch):
    return batch["data"][batch.mask("data")]  # [N, F]


def test_batch_norm_training_uses_masked_batch_stats_and_updates_moving():
    net = build_network({"output": {"class": "batch_norm", "momentum": 0.25, "epsilon": 1e-3}}, extern_data=EXTERN)
    layer = net.layers["output"]
    assert sorted(net.get_params()) == ["output/batch_norm/v2_beta", "output/batch_norm/v2_gamma",
                                        "output/batch_norm/v2_mean", "output/batch_norm/v2_variance"]
    assert {v.name.split(":")[0] for v in net.trainable_variables} == {"output/batch_norm/v2_beta",
                                                                        "output/batch_norm/v2_gamma"}
    batch = random_batch(net.extern_data, n_batch=4, max_time=6, seed=1, pad_value=1e3)
    frames = _valid_frames(batch)
    mean, var = frames.mean(0), frames.var(0)
    y = net(batch, train=True)["output"].numpy()
    want = (batch["data"] - mean) / np.sqrt(var + 1e-3)
    valid = batch.mask("data")
    np.testing.assert_allclose(y[valid], want[valid], rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(layer.mean.numpy(), 0.25 * mean, rtol=1e-5)
    np.testing.assert_allclose(layer.variance.numpy(), 0.75 + 0.25 * var, rtol=1e-5)
    # eval: moving statistics, no update
    y_eval = net(batch, train=False)["output"].numpy()
    want = (batch["data"] - 0.25 * mean) / np.sqrt(0.75 + 0.25 * var + 1e-3)
    np.testing.assert_allclose(y_eval[valid], want[valid], rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(layer.mean.numpy(), 0.25 * mean, rtol=1e-5)


def test_batch_norm_padding_does_not_change_statistics():
    results = []
    for pad_value in (0.0, 50.0):
        net = build_network({"output": {"class": "batch_norm"}}, extern_data=EXTERN)
        batch = random_batch(net.extern_data, n_batch=3, max_time=7, seed=2, pad_value=pad_value)
        y = net(batch, train=True)["output"].numpy()
        results.append((y[batch.mask("data")], net.layers["output"].mean.numpy()))
    np.testing.assert_allclose(results[0][0], results[1][0], rtol=1e-5)
    np.testing.assert_allclose(results[0][1], results[1][1], rtol=1e-5)


def test_batch_norm_train_under_tf_function_two_batch_shapes():
    net = build_network({"output": {"class": "batch_norm", "momentum": 0.5, "use_shift": False, "use_std": False}},
                        extern_data=EXTERN)
    forward = net.forward_function(["output"], train=True)
    moving = np.zeros(3)
    for n_batch, max_time in ((2, 4), (5, 9)):
        batch = random_batch(net.extern_data, n_batch=n_batch, max_time=max_time, seed=n_batch)
        forward({key: batch[key] for key in ("data", "data:seq_len")})
        moving = 0.5 * moving + 0.5 * _valid_frames(batch).mean(0)
        np.testing.assert_allclose(net.layers["output"].mean.numpy(), moving, rtol=1e-4, atol=1e-6)
    assert forward.experimental_get_tracing_count() == 1
    assert net.get_params().keys() == {"output/batch_norm/v2_mean", "output/batch_norm/v2_variance"}


def test_batch_norm_bad_input_and_option():
    with pytest.raises(LayerConfigError, match=r"layer 'output' \(class \"batch_norm\"\): needs dense input"):
        build_network({"output": {"class": "batch_norm", "from": "data:classes"}}, extern_data=EXTERN)
    with pytest.raises(LayerConfigError, match=r"\"momentum\" / \"use_sample\": expected values in \[0, 1\]"):
        build_network({"output": {"class": "batch_norm", "momentum": 1.5}}, extern_data=EXTERN)


def test_layer_norm_matches_numpy_with_params_scale_bias():
    net = build_network({"output": {"class": "layer_norm", "epsilon": 1e-5}}, extern_data=EXTERN)
    assert sorted(net.get_params()) == ["output/bias", "output/scale"]
    layer = net.layers["output"]
    layer.scale.assign([1.0, 2.0, 0.5])
    layer.bias.assign([0.1, -0.2, 0.3])
    batch = random_batch(net.extern_data, n_batch=3, max_time=5, seed=3)
    x = batch["data"]
    want = (x - x.mean(-1, keepdims=True)) / np.sqrt(x.var(-1, keepdims=True) + 1e-5) * [1, 2, 0.5] + [0.1, -0.2, 0.3]
    valid = batch.mask("data")
    np.testing.assert_allclose(net(batch)["output"].numpy()[valid], want[valid], rtol=1e-4, atol=1e-5)
    with pytest.raises(LayerConfigError, match=r"layer 'output' \(class \"layer_norm\"\): needs dense input"):
        build_network({"output": {"class": "layer_norm", "from": "data:classes"}}, extern_data=EXTERN)


def test_batch_norm_input_gradient_matches_finite_differences_and_skips_padding():
    net = build_network({"output": {"class": "batch_norm", "epsilon": 1e-2}}, extern_data=EXTERN)
    batch = random_batch(net.extern_data, n_batch=2, max_time=4, seed=5)
    x = batch["data"].astype(np.float64)
    mask = batch.mask("data")
    weights = np.random.default_rng(2).standard_normal(x.shape) * mask[..., None]

    def loss(values):
        feed = dict(batch, data=tf.constant(values, tf.float32))
        return float(np.sum(net(feed, train=True)["output"].numpy() * weights))

    var = tf.Variable(x.astype(np.float32))
    with tf.GradientTape() as tape:
        y = net(dict(batch, data=var), train=True)["output"].tensor
        value = tf.reduce_sum(y * weights.astype(np.float32))
    grad = tape.gradient(value, var).numpy()
    assert np.all(grad[~mask] == 0)  # padded frames do not influence anything
    eps = 1e-2
    for idx in [(0, 0, 0), (0, 3, 1), (1, 0, 2)]:
        if not mask[idx[:2]]:
            continue
        plus, minus = x.copy(), x.copy()
        plus[idx] += eps
        minus[idx] -= eps
        np.testing.assert_allclose(grad[idx], (loss(plus) - loss(minus)) / (2 * eps), rtol=3e-2, atol=3e-3)
