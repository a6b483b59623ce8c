import numpy as np
import pytest
import tensorflow as tf

from returnn.errors import LayerConfigError
from returnn.testing import blstm_net_dict, build_network, random_batch

EXTERN = {"data": {"dim": 4}, "classes": {"dim": 5, "sparse": True}}


def _sigmoid(x):
    return 1 / (1 + np.exp(-x))


def _lstm_numpy(x, n, w, w_re, b, direction):
    """One sequence [T, n_in] of valid frames; gate order j, i, f, o."""
    if direction == -1:
        x = x[::-1]
    c, h, ys = np.zeros(n), np.zeros(n), []
    for frame in x:
        j, i, f, o = np.split(frame @ w + h @ w_re + b, 4)
        c = _sigmoid(f) * c + _sigmoid(i) * np.tanh(j)
        h = _sigmoid(o) * np.tanh(c)
        ys.append(h)
    ys = np.array(ys)
    return ys[::-1] if direction == -1 else ys


@pytest.mark.parametrize("direction", [1, -1])
def test_rec_lstm_matches_numpy_on_valid_frames(direction):
    net = build_network({"output": {"class": "rec", "unit": "standardlstm", "n_out": 3, "direction": direction,
                                    "bias_init": 0.1}}, extern_data=EXTERN)
    batch = random_batch(net.extern_data, n_batch=3, max_time=6, seed=1, pad_value=5.0)
    out = net(batch)["output"]
    assert out.dims == net.templates["output"].dims and out.time_dim_axis == 0
    y = out.numpy()
    p = net.get_params()
    assert sorted(p) == ["output/W", "output/W_re", "output/b"]
    for b, n in enumerate(batch.seq_lens("data")):
        want = _lstm_numpy(batch["data"][b, :n], 3, p["output/W"].numpy(), p["output/W_re"].numpy(),
                           p["output/b"].numpy(), direction)
        np.testing.assert_allclose(y[:n, b], want, rtol=1e-4, atol=1e-5)
        assert (y[n:, b] == 0).all()


@pytest.mark.parametrize("unit", ["lstmblock", "gru", "rnn"])
def test_rec_other_units_run_and_ignore_padding(unit):
    net = build_network({"output": {"class": "rec", "unit": unit, "n_out": 3, "direction": -1}}, extern_data=EXTERN)
    a = random_batch(net.extern_data, n_batch=3, max_time=5, seed=2, pad_value=0.0)
    b = random_batch(net.extern_data, n_batch=3, max_time=5, seed=2, pad_value=7.0)
    ya, yb = net(a)["output"].numpy(), net(b)["output"].numpy()
    mask = a.mask("data").T
    np.testing.assert_allclose(ya[mask], yb[mask], rtol=1e-5)
    assert ya.shape == (5, 3, 3)


def test_rec_unit_errors():
    with pytest.raises(LayerConfigError, match=r"layer 'output' \(class \"rec\"\): \"unit\": unknown unit 'lstmm'; "
                                               r"did you mean 'lstm'"):
        build_network({"output": {"class": "rec", "unit": "lstmm", "n_out": 3}}, extern_data=EXTERN)
    with pytest.raises(LayerConfigError, match=r"layer 'output/output' \(class \"copy\"\): its template depends on "
                                               r"'prev:output'.*give the dims explicitly"):
        build_network({"output": {"class": "rec", "unit": {"output": {"class": "copy", "from": "prev:output"}},
                                  "n_out": 3}}, extern_data=EXTERN)
    with pytest.raises(LayerConfigError, match=r"\"direction\": expected 1 or -1, got 2"):
        build_network({"output": {"class": "rec", "unit": "gru", "n_out": 3, "direction": 2}}, extern_data=EXTERN)
    with pytest.raises(LayerConfigError, match=r"needs dense input"):
        build_network({"output": {"class": "rec", "from": "data:classes", "n_out": 3}}, extern_data=EXTERN)


def test_rec_reuse_params_and_trainable():
    net = build_network({"a": {"class": "rec", "unit": "gru", "n_out": 4},
                         "output": {"class": "rec", "unit": "gru", "n_out": 4, "from": "a", "reuse_params": "a"},
                         "frozen": {"class": "rec", "unit": "rnn", "n_out": 2, "trainable": False,
                                    "is_output_layer": True}}, extern_data=EXTERN)
    assert net.layers["output"].unit.W is net.layers["a"].unit.W
    assert sorted(net.get_params()) == ["a/W", "a/W_re", "a/b", "frozen/W", "frozen/W_re", "frozen/b"]
    assert not any(v.name.startswith("frozen") for v in net.trainable_variables)
    batch = random_batch(net.extern_data, seed=1)
    assert net(batch)["frozen"].numpy().shape[-1] == 2


def test_blstm_network_padding_influences_nothing():
    net = build_network(blstm_net_dict(n_out=6, dropout=0.1, l2=0.01), extern_data=EXTERN)
    assert "lstm0_fw/W_re" in net.get_params() and "output/W" in net.get_params()
    clean = random_batch(net.extern_data, n_batch=4, max_time=9, seed=3, pad_value=0.0)
    noisy = random_batch(net.extern_data, n_batch=4, max_time=9, seed=3, pad_value=100.0)
    mask = clean.mask("data")
    out_clean, out_noisy = net(clean)["output"].numpy(), net(noisy)["output"].numpy()
    np.testing.assert_allclose(out_clean.transpose(1, 0, 2)[mask], out_noisy.transpose(1, 0, 2)[mask], rtol=1e-5)
    loss_clean = net.total_loss(net.loss_values(net(clean), clean))
    loss_noisy = net.total_loss(net.loss_values(net(noisy), noisy))
    np.testing.assert_allclose(loss_clean.numpy(), loss_noisy.numpy(), rtol=1e-5)

    x = tf.constant(noisy["data"])
    with tf.GradientTape() as tape:
        tape.watch(x)
        outputs = net({**noisy, "data": x}, train=True)
        loss = net.total_loss(net.loss_values(outputs, noisy))
    grad = tape.gradient(loss, x).numpy()
    assert np.abs(grad[mask]).sum() > 0
    assert (grad[~mask] == 0).all()


@pytest.mark.slow
def test_blstm_network_traces_once_under_tf_function():
    net = build_network(blstm_net_dict(n_out=6, dropout=0.1, l2=0.01), extern_data=EXTERN)
    forward = net.forward_function(["output"])
    for n_batch, max_time in ((2, 5), (3, 8)):
        batch = random_batch(net.extern_data, n_batch=n_batch, max_time=max_time, seed=n_batch)
        result = forward(net.feed(batch))
        np.testing.assert_allclose(result["output"].numpy(), net(batch)["output"].numpy(), rtol=1e-5)
    assert forward.experimental_get_tracing_count() == 1


def test_rec_weight_inits():
    net = build_network({"output": {"class": "rec", "unit": "rnn", "n_out": 3, "forward_weights_init": 0.5,
                                    "recurrent_weights_init": "zeros", "bias_init": 1.0}}, extern_data=EXTERN)
    p = {k: v.numpy() for k, v in net.get_params().items()}
    assert (p["output/W"] == 0.5).all() and (p["output/W_re"] == 0).all() and (p["output/b"] == 1).all()
    net = build_network({"output": {"class": "rec", "unit": "gru", "n_out": 3, "param_init": 0.25}},
                        extern_data=EXTERN)
    p = {k: v.numpy() for k, v in net.get_params().items()}
    assert (p["output/W"] == 0.25).all() and (p["output/W_re"] == 0.25).all() and (p["output/b"] == 0).all()
