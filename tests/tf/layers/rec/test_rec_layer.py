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


FRAME = {"data": {"shape": (4,), "time_dim_axis": None}}
LOOP_UNITS = ["nativelstm2", "lstmblock", "standardlstm", "gru", "rnn"]


def _lstm_numpy_state(x, n, w, w_re, b, direction):
    """(c, h) after the valid frames x [T, n_in] of one sequence (reversed for direction -1)."""
    c, h = np.zeros(n), np.zeros(n)
    for frame in (x[::-1] if direction == -1 else x):
        j, i, f, o = np.split(frame @ w + h @ w_re + b, 4)
        c = _sigmoid(f) * c + _sigmoid(i) * np.tanh(j)
        h = _sigmoid(o) * np.tanh(c)
    return c, h


@pytest.mark.parametrize("unit", LOOP_UNITS)
def test_rec_in_loop_steps_match_whole_sequence(unit, loop):
    layer = {"class": "rec", "unit": unit, "n_out": 3, "bias_init": 0.1}
    whole = build_network({"output": layer, "last": {"class": "copy", "from": "output/last_state",
                                                     "is_output_layer": True}}, extern_data=EXTERN)
    body = loop.body({"output": layer, "last": {"class": "copy", "from": "output/last_state",
                                                "is_output_layer": True}}, extern_data=FRAME)
    template = body.templates["output"]
    assert template.time_dim is None and template.batch_shape == (None, 3) and template.batch_dim_axis == 0
    params = {name: var.numpy() for name, var in whole.get_params().items()}
    assert {k: v.shape for k, v in params.items()} == {k: tuple(v.shape) for k, v in body.get_params().items()}
    body.load_params(params)

    batch = random_batch(whole.extern_data, n_batch=4, max_time=6, seed=3, pad_value=9.0)
    want = whole(batch)
    got = loop.run(body, {"data": batch["data"]})
    lens = batch.seq_lens("data")
    for b, n in enumerate(lens):
        np.testing.assert_allclose(got["output"][:n, b], want["output"].numpy()[:n, b], rtol=1e-5, atol=1e-5)
        # the loop's state after the last valid frame is the whole-sequence last state
        np.testing.assert_allclose(got["last"][n - 1, b], want["last"].numpy()[b], rtol=1e-5, atol=1e-5)
    n_parts = 2 if "lstm" in unit else 1
    assert want["last"].dims[-1].size == got["last"].shape[-1] == n_parts * 3


@pytest.mark.parametrize("direction", [1, -1])
def test_rec_last_state_is_c_then_h_at_the_last_valid_frame(direction):
    net = build_network({"output": {"class": "rec", "unit": "nativelstm2", "n_out": 3, "direction": direction,
                                    "bias_init": 0.1},
                         "all": {"class": "copy", "from": "output/last_state", "is_output_layer": True},
                         "c": {"class": "copy", "from": "output/last_state/c", "is_output_layer": True},
                         "h": {"class": "copy", "from": "output/last_state/h", "is_output_layer": True},
                         "flat": {"class": "copy", "from": "output/last_state/flat", "is_output_layer": True}},
                        extern_data=EXTERN)
    batch = random_batch(net.extern_data, n_batch=3, max_time=6, seed=4, pad_value=5.0)
    out = net(batch)
    p = {k.split("/")[-1]: v.numpy() for k, v in net.get_params().items() if k.startswith("output/")}
    for b, n in enumerate(batch.seq_lens("data")):
        c, h = _lstm_numpy_state(batch["data"][b, :n], 3, p["W"], p["W_re"], p["b"], direction)
        np.testing.assert_allclose(out["all"].numpy()[b], np.concatenate([c, h]), rtol=1e-5, atol=1e-5)
        np.testing.assert_allclose(out["flat"].numpy()[b], np.concatenate([c, h]), rtol=1e-5, atol=1e-5)
        np.testing.assert_allclose(out["c"].numpy()[b], c, rtol=1e-5, atol=1e-5)
        np.testing.assert_allclose(out["h"].numpy()[b], h, rtol=1e-5, atol=1e-5)
    assert out["all"].dims == net.templates["all"].dims and net.templates["all"].batch_shape == (None, 6)


def test_rec_last_state_under_tf_function():
    net = build_network({"output": {"class": "rec", "unit": "gru", "n_out": 3},
                         "last": {"class": "copy", "from": "output/last_state", "is_output_layer": True}},
                        extern_data=EXTERN)
    forward = net.forward_function(["last"])
    for n_batch, max_time in ((2, 4), (3, 7)):
        batch = random_batch(net.extern_data, n_batch=n_batch, max_time=max_time, seed=n_batch)
        np.testing.assert_allclose(forward(net.feed(batch))["last"].numpy(), net(batch)["last"].numpy(), rtol=1e-5)
    assert forward.experimental_get_tracing_count() == 1


def test_rec_in_loop_concatenates_its_sources_like_the_enc_dec_demo(loop):
    """``"s": {"class": "rec", "unit": "nativelstm2", "from": ["prev:output_embed", "base:input_last"]}``."""
    body = loop.body({"output": {"class": "rec", "unit": "nativelstm2", "from": ["data:a", "data:b"], "n_out": 5}},
                     extern_data={"a": {"shape": (2,), "time_dim_axis": None},
                                  "b": {"shape": (6,), "time_dim_axis": None}})
    layer = body.layers["output"]
    assert {k: tuple(v.shape) for k, v in body.get_params().items()} == {
        "output/W": (8, 20), "output/W_re": (5, 20), "output/b": (20,)}
    c0, h0 = layer.initial_state(3)
    assert c0.shape == h0.shape == (3, 5) and not np.any(c0.numpy())
    rng = np.random.default_rng(0)
    a, b = rng.normal(size=(3, 2)).astype(np.float32), rng.normal(size=(3, 6)).astype(np.float32)
    sources = [body.extern_data["a"].with_tensor(a), body.extern_data["b"].with_tensor(b)]
    y, (c, h) = layer.step(sources, (c0, h0), train=False, i=0)
    want_y, _ = layer.unit.step(np.concatenate([a, b], axis=1), (c0, h0))
    np.testing.assert_allclose(y.numpy(), want_y.numpy(), rtol=1e-6)
    assert y.dims == body.templates["output"].dims and np.allclose(h.numpy(), y.numpy())


def test_rec_in_loop_errors(loop):
    with pytest.raises(LayerConfigError, match=r"layer 'output' \(class \"rec\"\): \"direction\": -1 needs a time "
                                               r"axis; inside a rec loop"):
        loop.body({"output": {"class": "rec", "unit": "lstm", "n_out": 3, "direction": -1}}, extern_data=FRAME)
    with pytest.raises(LayerConfigError, match=r"inside a rec loop needs input \[B, F\]"):
        loop.body({"output": {"class": "rec", "unit": "lstm", "n_out": 3}},
                  extern_data={"data": {"shape": (2, 4), "time_dim_axis": None}})
    body = loop.body({"output": {"class": "rec", "unit": "gru", "n_out": 3}}, extern_data=FRAME)
    with pytest.raises(TypeError, match=r"layer 'output'.*one frame per step.*initial_state\(\) and step\(\)"):
        body.layers["output"]([body.extern_data["data"].with_tensor(np.zeros((2, 4), np.float32))], train=False)
    assert build_network({"output": {"class": "rec", "unit": "gru", "n_out": 3}},
                         extern_data=EXTERN).layers["output"].initial_state(2) is None


def test_rec_last_state_sublayer_errors():
    with pytest.raises(LayerConfigError, match=r"layer 'enc' \(class \"rec\"\): no sublayer 'last_state/c'; "
                                               r"unit 'gru' has one state tensor \(h\); sublayers: 'enc/last_state'$"):
        build_network({"enc": {"class": "rec", "unit": "gru", "n_out": 3},
                       "output": {"class": "copy", "from": "enc/last_state/c"}}, extern_data=EXTERN)
    with pytest.raises(LayerConfigError, match=r"no sublayer 'state'; unit 'lstm' has the state \(c, h\).*"
                                               r"'enc/last_state', 'enc/last_state/c', 'enc/last_state/h'"):
        build_network({"enc": {"class": "rec", "unit": "lstm", "n_out": 3},
                       "output": {"class": "copy", "from": "enc/state"}}, extern_data=EXTERN)


def test_rec_in_a_subnetwork_names_params_by_path_and_exposes_last_state():
    net = build_network({"output": {"class": "subnetwork", "subnetwork": {
        "lstm": {"class": "rec", "unit": "lstmblock", "n_out": 3},
        "output": {"class": "copy", "from": "lstm/last_state/h"}}}}, extern_data=EXTERN)
    assert sorted(net.get_params()) == ["output/lstm/W", "output/lstm/W_re", "output/lstm/b"]
    unit = net.layers["output"].subnetwork.layers["lstm"].unit
    assert unit.W.name == "output/lstm/W:0"
    batch = random_batch(net.extern_data, n_batch=3, max_time=5, seed=5)
    out = net(batch)["output"].numpy()
    y = net.layers["output"].subnetwork(dict(batch, data=net.extern_values(batch, ["data"])["data"]))["lstm"].numpy()
    np.testing.assert_allclose(out, np.stack([y[n - 1, b] for b, n in enumerate(batch.seq_lens("data"))]), rtol=1e-6)


def test_rec_in_loop_steps_inside_a_tf_while_loop(loop):
    """As the rec loop will run it: initial_state and step_with_subs in a traced tf.while_loop."""
    body = loop.body({"output": {"class": "rec", "unit": "lstm", "n_out": 3},
                      "last": {"class": "copy", "from": "output/last_state", "is_output_layer": True}},
                     extern_data=FRAME)
    layer, frame = body.layers["output"], body.extern_data["data"]

    @tf.function(input_signature=[tf.TensorSpec([None, None, 4])])
    def run(x):
        def step(t, state, ys):
            out, subs, state = layer.step_with_subs([frame.with_tensor(x[:, t])], state, train=False, i=t)
            return t + 1, state, ys.write(t, subs["last_state"].tensor)

        ys = tf.TensorArray(tf.float32, size=tf.shape(x)[1])
        _, state, ys = tf.while_loop(lambda t, *_: t < tf.shape(x)[1], step,
                                     (0, layer.initial_state(tf.shape(x)[0]), ys))
        return ys.stack(), state

    x = np.random.default_rng(2).normal(size=(2, 5, 4)).astype(np.float32)
    lasts, (c, h) = run(x)
    want = loop.run(body, {"data": x})["last"]
    np.testing.assert_allclose(lasts.numpy(), want, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(np.concatenate([c, h], axis=-1), want[-1], rtol=1e-5, atol=1e-6)
