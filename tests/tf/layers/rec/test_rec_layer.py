import numpy as np
import pytest
import tensorflow as tf

from returnn.errors import LayerConfigError
from returnn.testing import blstm_net_dict, build_network, random_batch, rec_loop_dict, rec_unit_network

EXTERN = {"data": {"dim": 4}, "classes": {"dim": 5, "sparse": True}}


def _sigmoid(x):
    return 1 / (1 + np.exp(-x))


def _lstm_numpy(x, n, w, w_re, b, direction, c0=None, h0=None):
    """One sequence [T, n_in] of valid frames; gate order j, i, f, o; state (c0, h0) before the first frame."""
    if direction == -1:
        x = x[::-1]
    c, h, ys = np.zeros(n) if c0 is None else c0, np.zeros(n) if h0 is None else h0, []
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


LOOP_UNITS = ["nativelstm2", "lstmblock", "standardlstm", "gru", "rnn"]


def _lstm_numpy_state(x, n, w, w_re, b, direction):
    """(c, h) after the valid frames x [T, n_in] of one sequence (reversed for direction -1)."""
    c, h = np.zeros(n), np.zeros(n)
    for frame in (x[::-1] if direction == -1 else x):
        j, i, f, o = np.split(frame @ w + h @ w_re + b, 4)
        c = _sigmoid(f) * c + _sigmoid(i) * np.tanh(j)
        h = _sigmoid(o) * np.tanh(c)
    return c, h


def _cell_in_loop_and_whole(unit):
    """The cell of ``unit`` as the unit of a rec loop over data, and as a whole-sequence layer with the same
    params; both also give its last state as ``last``."""
    layer = {"class": "rec", "unit": unit, "n_out": 3, "bias_init": 0.1}
    last = {"class": "copy", "from": "output/last_state", "is_output_layer": True}
    whole = build_network({"output": layer, "last": last}, extern_data=EXTERN)
    loop_net = build_network(rec_loop_dict({"output": {**layer, "from": "data:source"}, "last": last}),
                             extern_data=EXTERN)
    params = {name: var.numpy() for name, var in whole.get_params().items()}
    assert {f"output/{k}": v.shape for k, v in params.items()} == {
        k: tuple(v.shape) for k, v in loop_net.get_params().items()}
    loop_net.load_params({f"output/{k}": v for k, v in params.items()})
    return loop_net, whole


@pytest.mark.parametrize("unit", LOOP_UNITS)
def test_rec_in_loop_steps_match_whole_sequence(unit):
    loop_net, whole = _cell_in_loop_and_whole(unit)
    template = rec_unit_network(loop_net).templates["output"]
    assert template.time_dim is None and template.batch_shape == (None, 3) and template.batch_dim_axis == 0
    batch = random_batch(whole.extern_data, n_batch=4, max_time=6, seed=3, pad_value=9.0)
    want, got = whole(batch), loop_net(batch)
    lens = batch.seq_lens("data")
    for b, n in enumerate(lens):
        np.testing.assert_allclose(got["output"].numpy()[:n, b], want["output"].numpy()[:n, b], rtol=1e-5, atol=1e-5)
        # the loop's state after the last valid frame is the whole-sequence last state
        np.testing.assert_allclose(got["output/last"].numpy()[n - 1, b], want["last"].numpy()[b], rtol=1e-5,
                                   atol=1e-5)
    n_parts = 2 if "lstm" in unit else 1
    assert want["last"].dims[-1].size == got["output/last"].numpy().shape[-1] == n_parts * 3


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


def test_rec_in_loop_concatenates_its_sources_like_the_enc_dec_demo():
    """``"s": {"class": "rec", "unit": "nativelstm2", "from": ["prev:output_embed", "base:input_last"]}``."""
    net = build_network(rec_loop_dict({"output": {"class": "rec", "unit": "nativelstm2", "n_out": 5,
                                                  "from": ["data:source", "data:b"]}}, source="data:a"),
                        extern_data={"a": {"dim": 2}, "b": {"dim": 6}})
    body = rec_unit_network(net)
    layer = body.layers["output"]
    assert {k: tuple(v.shape) for k, v in net.get_params().items()} == {
        "output/output/W": (8, 20), "output/output/W_re": (5, 20), "output/output/b": (20,)}
    c0, h0 = layer.initial_state(3)
    assert c0.shape == h0.shape == (3, 5) and not np.any(c0.numpy())
    rng = np.random.default_rng(0)
    a, b = rng.normal(size=(3, 2)).astype(np.float32), rng.normal(size=(3, 6)).astype(np.float32)
    sources = [template.with_tensor(value) for template, value in zip(layer.ctx.sources, (a, b))]
    y, (c, h) = layer.step(sources, (c0, h0), train=False, i=0)
    want_y, _ = layer.unit.step(np.concatenate([a, b], axis=1), (c0, h0))
    np.testing.assert_allclose(y.numpy(), want_y.numpy(), rtol=1e-6)
    assert y.dims == body.templates["output"].dims and np.allclose(h.numpy(), y.numpy())
    batch = random_batch(net.extern_data, n_batch=3, max_time=4, seed=1)
    np.testing.assert_allclose(net(batch)["output"].numpy()[0], layer.unit.step(
        np.concatenate([batch["a"][:, 0], batch["b"][:, 0]], axis=1), (c0, h0))[0].numpy(), rtol=1e-6)


def test_rec_in_loop_errors():
    def build(layer, extern=EXTERN):
        return build_network(rec_loop_dict({"output": {"from": "data:source", **layer}}), extern_data=extern)

    with pytest.raises(LayerConfigError, match=r"layer 'output/output' \(class \"rec\"\): \"direction\": -1 needs a "
                                               r"time axis; inside a rec loop"):
        build({"class": "rec", "unit": "lstm", "n_out": 3, "direction": -1})
    with pytest.raises(LayerConfigError, match=r"inside a rec loop needs input \[B, F\]"):
        build({"class": "rec", "unit": "lstm", "n_out": 3}, extern={"data": {"shape": (None, 2, 4)}})
    layer = rec_unit_network(build({"class": "rec", "unit": "gru", "n_out": 3})).layers["output"]
    with pytest.raises(TypeError, match=r"layer 'output/output'.*one frame per step.*initial_state\(\) and step\(\)"):
        layer([layer.ctx.sources[0].with_tensor(np.zeros((2, 4), np.float32))], train=False)
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


def test_rec_in_loop_last_state_under_tf_function():
    loop_net, whole = _cell_in_loop_and_whole("lstm")
    forward = loop_net.forward_function(["output/last"])
    for n_batch, max_time in ((2, 4), (3, 7)):
        batch = random_batch(whole.extern_data, n_batch=n_batch, max_time=max_time, seed=n_batch)
        lasts = forward(loop_net.feed(batch))["output/last"].numpy()
        np.testing.assert_allclose(lasts, loop_net(batch)["output/last"].numpy(), rtol=1e-5, atol=1e-6)
        want = whole(batch)["last"].numpy()
        for b, n in enumerate(batch.seq_lens("data")):
            np.testing.assert_allclose(lasts[n - 1, b], want[b], rtol=1e-5, atol=1e-5)
    assert forward.experimental_get_tracing_count() == 1


@pytest.mark.parametrize("unit", ["standardlstm", "nativelstm"])
def test_rec_initial_state_from_layers_matches_numpy(unit):
    net = build_network({
        "mean": {"class": "reduce", "mode": "mean", "axis": "T", "from": "data"},
        "c0": {"class": "linear", "from": "mean", "n_out": 3, "activation": "tanh"},
        "h0": {"class": "linear", "from": "mean", "n_out": 3, "activation": "tanh"},
        "output": {"class": "rec", "unit": unit, "n_out": 3, "direction": -1, "is_output_layer": True,
                   "initial_state": {"c": "c0", "h": "h0"}}}, extern_data=EXTERN)
    batch = random_batch(net.extern_data, n_batch=3, max_time=6, seed=3)
    values = net(batch)
    y, c0, h0 = values["output"].numpy(), values["c0"].numpy(), values["h0"].numpy()
    p = {k: v.numpy() for k, v in net.get_params().items()}
    for b, n in enumerate(batch.seq_lens("data")):
        want = _lstm_numpy(batch["data"][b, :n], 3, p["output/W"], p["output/W_re"], p["output/b"], -1,
                           c0=c0[b], h0=h0[b])
        np.testing.assert_allclose(y[:n, b], want, rtol=1e-4, atol=1e-5)


def test_rec_initial_state_ones_and_var():
    net = build_network({"output": {"class": "rec", "unit": "standardlstm", "n_out": 3, "initial_state": "ones"}},
                        extern_data=EXTERN)
    batch = random_batch(net.extern_data, n_batch=2, max_time=5, seed=4)
    y, p = net(batch)["output"].numpy(), {k: v.numpy() for k, v in net.get_params().items()}
    for b, n in enumerate(batch.seq_lens("data")):
        want = _lstm_numpy(batch["data"][b, :n], 3, p["output/W"], p["output/W_re"], p["output/b"], 1,
                           c0=np.ones(3), h0=np.ones(3))
        np.testing.assert_allclose(y[:n, b], want, rtol=1e-4, atol=1e-5)
    net = build_network({"output": {"class": "rec", "unit": "gru", "n_out": 3, "initial_state": "var"}},
                        extern_data=EXTERN)
    params = net.get_params()
    assert sorted(params) == ["output/W", "output/W_re", "output/b", "output/initial_h"]
    params["output/initial_h"].assign([0.5, -0.5, 0.25])
    with tf.GradientTape() as tape:
        loss = tf.reduce_sum(net(batch)["output"].tensor)
    assert tape.gradient(loss, params["output/initial_h"]) is not None


@pytest.mark.parametrize("net_dict, match", [
    ({"output": {"class": "rec", "unit": "lstm", "n_out": 3, "initial_state": {"x": "zeros"}}},
     r"\"initial_state\": no state part 'x'; the unit has 'c', 'h'"),
    ({"s": {"class": "reduce", "mode": "max", "axis": "T", "from": "data"},
      "output": {"class": "rec", "unit": "lstm", "n_out": 3, "initial_state": "s"}},
     r"layer 's' for state part 'c' must be \[B, 3\]"),
    ({"output": {"class": "rec", "unit": "lstm", "n_out": 3, "initial_state": "keep_over_epoch"}},
     r"'keep_over_epoch' .* is not supported"),
    ({"output": {"class": "rec", "unit": {"output": {"class": "copy", "from": "data:source"}},
                 "initial_state": "zeros"}}, r"'initial_state': options of a unit string"),
])
def test_rec_initial_state_errors(net_dict, match):
    with pytest.raises(LayerConfigError, match=match):
        build_network(net_dict, extern_data=EXTERN)


def test_rec_unroll_is_accepted_and_changes_nothing():
    layer = {"class": "rec", "unit": "BasicLSTM", "n_out": 3, "max_seq_len": 100}
    batch = None
    outs = []
    for unroll in (False, True):
        net = build_network({"output": {**layer, "unroll": unroll}}, extern_data=EXTERN)
        batch = batch or random_batch(net.extern_data, n_batch=2, max_time=5, seed=5)
        outs.append(net(batch)["output"].numpy())
    np.testing.assert_array_equal(outs[0], outs[1])
