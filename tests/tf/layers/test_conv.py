import functools
import itertools

import numpy as np
import pytest
import tensorflow as tf

from returnn.errors import LayerConfigError
from returnn.testing import build_network, random_batch, run_network

EXTERN = {"data": {"dim": 4}}


_run = functools.partial(run_network, extern_data=EXTERN, n_batch=3, max_time=9)


def _windows(shape, sizes, strides, dilation, padding):
    """For every output position the input positions (None outside) of its window, numpy-style reference."""
    out_shape, lefts = [], []
    for n, k, s, d in zip(shape, sizes, strides, dilation):
        eff = (k - 1) * d + 1
        if padding == "same":
            out_shape.append(-(-n // s))
            lefts.append((eff - 1) // 2)
        else:
            out_shape.append(max(-(-(n - eff + 1) // s), 0))
            lefts.append(0)
    for pos in itertools.product(*[range(m) for m in out_shape]):
        taps = []
        for kpos in itertools.product(*[range(k) for k in sizes]):
            src = tuple(p * s + j * d - left for p, j, s, d, left in zip(pos, kpos, strides, dilation, lefts))
            inside = all(0 <= i < n for i, n in zip(src, shape))
            taps.append((kpos, src if inside else None))
        yield pos, taps, out_shape


def np_conv(x, w, b, strides, dilation, padding):
    """x [spatial..., in], w [*sizes, in, out] -> [out spatial..., out]."""
    sizes = w.shape[:-2]
    out = None
    for pos, taps, out_shape in _windows(x.shape[:-1], sizes, strides, dilation, padding):
        if out is None:
            out = np.zeros(out_shape + [w.shape[-1]], np.float64)
        out[pos] = b + sum(x[src] @ w[kpos] for kpos, src in taps if src is not None)
    if out is None:
        out = np.zeros([0] * len(sizes) + [w.shape[-1]])
    return out


@pytest.mark.parametrize("padding, strides, dilation", [("same", 1, 1), ("valid", 1, 1), ("same", 2, 1),
                                                         ("valid", 2, 1), ("same", 1, 2), ("valid", 1, 2)])
def test_conv1d_matches_numpy_per_sequence(padding, strides, dilation):
    net, batch, out = _run({"output": {"class": "conv", "n_out": 3, "filter_size": (3,), "padding": padding,
                                       "strides": strides, "dilation_rate": dilation}}, pad_value=5.0)
    layer, y = net.layers["output"], out["output"]
    w, b = layer.W.numpy(), layer.b.numpy()
    assert sorted(net.get_params()) == ["output/W", "output/bias"]
    for i, n in enumerate(batch.seq_lens("data")):
        want = np_conv(batch["data"][i, :n], w, b, (strides,), (dilation,), padding)
        assert y.seq_lens.numpy()[i] == len(want)
        np.testing.assert_allclose(y.numpy()[i, :len(want)], want, rtol=1e-4, atol=1e-5)


def test_conv2d_with_input_add_feature_dim():
    net, batch, out = _run({"output": {"class": "conv", "n_out": 2, "filter_size": (3, 2), "padding": "same",
                                       "strides": (2, 1), "input_add_feature_dim": True, "activation": "relu"}},
                           pad_value=3.0)
    layer, y = net.layers["output"], out["output"]
    w, b = layer.W.numpy(), layer.b.numpy()
    assert w.shape == (3, 2, 1, 2) and y.numpy().shape == (3, 5, 4, 2)
    for i, n in enumerate(batch.seq_lens("data")):
        want = np.maximum(np_conv(batch["data"][i, :n, :, None], w, b, (2, 1), (1, 1), "same"), 0)
        assert y.seq_lens.numpy()[i] == want.shape[0]
        np.testing.assert_allclose(y.numpy()[i, :want.shape[0]], want, rtol=1e-4, atol=1e-5)


def test_conv_input_split_feature_dim():
    net, batch, out = _run({"output": {"class": "conv", "n_out": 2, "filter_size": (1, 2), "padding": "valid",
                                       "input_split_feature_dim": 2, "with_bias": False}})
    layer, y = net.layers["output"], out["output"]
    assert layer.W.shape == (1, 2, 2, 2) and y.numpy().shape == (3, 9, 1, 2)
    x = batch["data"].reshape(3, 9, 2, 2)
    want = np.einsum("btsi,sio->bto", x, layer.W.numpy()[0])
    np.testing.assert_allclose(y.numpy()[:, :, 0], want, rtol=1e-4, atol=1e-5)


def test_conv_misuse_names_layer_and_option():
    with pytest.raises(LayerConfigError, match=r"layer 'output' \(class \"conv\"\): \"filter_size\": expected 1 "
                                               r"sizes"):
        build_network({"output": {"class": "conv", "n_out": 2, "filter_size": (3, 3)}}, extern_data=EXTERN)
    with pytest.raises(LayerConfigError, match=r"\"padding\": expected \"same\" or \"valid\""):
        build_network({"output": {"class": "conv", "n_out": 2, "filter_size": (3,), "padding": "full"}},
                      extern_data=EXTERN)


def np_pool(x, size, stride, padding, mode):
    """x [T, F] valid frames only -> pooled [T', F]."""
    rows = []
    for pos, taps, _ in _windows(x.shape[:-1], (size,), (stride,), (1,), padding):
        frames = np.stack([x[src] for _, src in taps if src is not None])
        rows.append(frames.max(0) if mode == "max" else frames.mean(0))
    return np.stack(rows) if rows else np.zeros((0, x.shape[-1]))


@pytest.mark.parametrize("mode, padding", [("max", "same"), ("max", "valid"), ("avg", "same"), ("avg", "valid")])
def test_pool_matches_numpy_and_ignores_padding(mode, padding):
    # padding frames hold +100 (would win a max) or shift an average
    _, batch, out = _run({"output": {"class": "pool", "mode": mode, "pool_size": (3,), "padding": padding,
                                     "strides": 2}}, pad_value=100.0)
    y = out["output"]
    for i, n in enumerate(batch.seq_lens("data")):
        want = np_pool(batch["data"][i, :n], 3, 2, padding, mode)
        assert y.seq_lens.numpy()[i] == len(want)
        np.testing.assert_allclose(y.numpy()[i, :len(want)], want, rtol=1e-5, atol=1e-6)


def test_pool_bad_mode():
    with pytest.raises(LayerConfigError, match=r"layer 'output' \(class \"pool\"\): \"mode\": expected \"max\""):
        build_network({"output": {"class": "pool", "mode": "mean", "pool_size": (2,)}}, extern_data=EXTERN)


def test_conv_param_gradient_matches_finite_differences():
    net = build_network({"output": {"class": "conv", "n_out": 2, "filter_size": (3,), "padding": "same",
                                    "strides": 2, "activation": "tanh"}}, extern_data=EXTERN)
    batch = random_batch(net.extern_data, n_batch=2, max_time=5, seed=3)
    weights = np.random.default_rng(1).standard_normal((2, 3, 2)).astype(np.float32)
    w = net.layers["output"].W

    def loss():
        y = net(batch)["output"]
        mask = y.mask_broadcast().numpy().astype(np.float32)
        return tf.reduce_sum(y.tensor * weights * mask)

    with tf.GradientTape() as tape:
        value = loss()
    grad = tape.gradient(value, w).numpy()
    base, eps = w.numpy(), 1e-2
    for idx in np.ndindex(*base.shape):
        for sign in (1, -1):
            shifted = base.copy()
            shifted[idx] += sign * eps
            w.assign(shifted)
            if sign == 1:
                plus = loss().numpy()
            else:
                minus = loss().numpy()
        w.assign(base)
        np.testing.assert_allclose(grad[idx], (plus - minus) / (2 * eps), rtol=2e-2, atol=2e-3)
