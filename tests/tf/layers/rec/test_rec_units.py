"""Tests of the recurrent units: numpy references, ragged lengths, both directions, shared LSTM params."""

from __future__ import annotations

import logging

import numpy as np
import pytest
import tensorflow as tf

from returnn.errors import LayerConfigError
from returnn.log import logger
from returnn.tf.layers.rec import lstm_units, units
from returnn.tf.layers.rec.unit_base import reverse_valid
from returnn.tf.layers.rec.units import UNITS, RecUnit, make_unit, unit_key

CPU_UNITS = ["nativelstm", "lstmblock", "standardlstm", "gru", "rnn"]
LSTM_UNITS = ["nativelstm", "lstmblock", "standardlstm"]
N_IN, N_OUT = 5, 6


def sigmoid(x):
    return 1.0 / (1.0 + np.exp(-x))


def numpy_step(unit: str, params: dict, x_t: np.ndarray, state: tuple) -> tuple[np.ndarray, tuple]:
    """One step of each unit's documented math in numpy (LSTM gate order j, i, f, o)."""
    W, W_re, b = params["W"], params["W_re"], params["b"]
    if unit in LSTM_UNITS:
        c, h = state
        j, i, f, o = np.split(x_t @ W + b + h @ W_re, 4, axis=-1)
        c = sigmoid(f) * c + sigmoid(i) * np.tanh(j)
        h = sigmoid(o) * np.tanh(c)
        return h, (c, h)
    (h,) = state
    if unit == "rnn":
        h = np.tanh(x_t @ W + b + h @ W_re)
        return h, (h,)
    n = h.shape[-1]
    z = x_t @ W + b
    r, u = np.split(sigmoid(z[:, : 2 * n] + h @ W_re[:, : 2 * n]), 2, axis=-1)
    h = u * h + (1 - u) * np.tanh(z[:, 2 * n:] + (r * h) @ W_re[:, 2 * n:])
    return h, (h,)


def numpy_unit(unit: str, params: dict, x: np.ndarray, seq_lens: np.ndarray, direction: int, state0: tuple):
    """Per sequence: run over its valid frames (reversed for direction -1); zeros on padding."""
    y = np.zeros(x.shape[:2] + (N_OUT,), np.float64)
    finals = [np.array(s, np.float64) for s in state0]
    for b, length in enumerate(seq_lens):
        state = tuple(s[b: b + 1].astype(np.float64) for s in state0)
        frames = range(length) if direction == 1 else range(length - 1, -1, -1)
        for t in frames:
            out, state = numpy_step(unit, params, x[t, b: b + 1].astype(np.float64), state)
            y[t, b] = out[0]
        for final, s in zip(finals, state):
            final[b] = s[0]
    return y, finals


def random_batch(seed: int, time: int = 7, batch: int = 4):
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(time, batch, N_IN)).astype(np.float32)
    seq_lens = np.array([time, 3, 0, 5][:batch], np.int32)
    return x, seq_lens


def params_of(unit: RecUnit) -> dict:
    return {name: getattr(unit, name).numpy().astype(np.float64) for name in ("W", "W_re", "b")}


def flat_state(state) -> list:
    return list(state) if isinstance(state, tuple) else [state]


@pytest.mark.parametrize("direction", [1, -1])
@pytest.mark.parametrize("unit", CPU_UNITS)
def test_rec_unit_matches_numpy_reference(unit, direction):
    x, seq_lens = random_batch(0)
    rec = make_unit(unit, n_in=N_IN, n_out=N_OUT, name=unit, bias_init=0.1, seed=3)
    n_state = 2 if unit in LSTM_UNITS else 1
    rng = np.random.default_rng(1)
    state0 = tuple(rng.normal(size=(x.shape[1], N_OUT)).astype(np.float32) for _ in range(n_state))
    initial = state0 if n_state == 2 else state0[0]
    y, final = rec(tf.constant(x), tf.constant(seq_lens), direction=direction, initial_state=initial)
    want_y, want_final = numpy_unit(unit, params_of(rec), x, seq_lens, direction, state0)
    assert y.shape == (x.shape[0], x.shape[1], N_OUT)
    np.testing.assert_allclose(y.numpy(), want_y, rtol=1e-5, atol=1e-5)
    for got, want in zip(flat_state(final), want_final):
        np.testing.assert_allclose(got.numpy(), want, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("direction", [1, -1])
def test_rec_lstm_units_share_params_outputs_and_gradients(direction):
    x, seq_lens = random_batch(2)
    units = {name: make_unit(name, n_in=N_IN, n_out=N_OUT, name=name, seed=i) for i, name in enumerate(LSTM_UNITS)}
    source = units["nativelstm"]
    source.b.assign(tf.random.normal([4 * N_OUT], seed=5))
    results = {}
    for name, rec in units.items():
        for param in ("W", "W_re", "b"):
            getattr(rec, param).assign(getattr(source, param))
        with tf.GradientTape() as tape:
            y, (c, h) = rec(tf.constant(x), tf.constant(seq_lens), direction=direction)
            loss = tf.reduce_sum(y * tf.range(1.0, 1.0 + N_OUT)) + tf.reduce_sum(c * c) + tf.reduce_sum(h)
        results[name] = [y, c, h] + tape.gradient(loss, [rec.W, rec.W_re, rec.b])
    for name in ("lstmblock", "standardlstm"):
        for got, want in zip(results[name], results["nativelstm"]):
            np.testing.assert_allclose(got.numpy(), want.numpy(), rtol=1e-5, atol=1e-5, err_msg=name)


@pytest.mark.parametrize("unit", CPU_UNITS)
def test_rec_unit_traces_in_tf_function_for_two_batch_shapes(unit):
    rec = make_unit(unit, n_in=N_IN, n_out=N_OUT, name=unit)

    @tf.function
    def run(x, seq_lens):
        with tf.GradientTape() as tape:
            y, _ = rec(x, seq_lens, direction=-1, train=True)
            loss = tf.reduce_sum(y)
        return y, tape.gradient(loss, rec.trainable_variables)

    for time, batch in ((4, 2), (9, 3)):
        x, seq_lens = random_batch(time, time=time, batch=batch)
        y, grads = run(tf.constant(x), tf.constant(seq_lens))
        assert y.shape == (time, batch, N_OUT)
        assert np.all(y.numpy()[:, 1][seq_lens[1]:] == 0)
        assert len(grads) == 3 and all(g is not None for g in grads)


def test_rec_unit_param_names_and_shapes():
    for unit, gates in (("nativelstm", 4), ("standardlstm", 4), ("lstmblock", 4), ("gru", 3), ("rnn", 1)):
        rec = make_unit(unit, n_in=N_IN, n_out=N_OUT, name="enc")
        assert [v.name for v in (rec.W, rec.W_re, rec.b)] == ["enc/W:0", "enc/W_re:0", "enc/b:0"]
        assert (rec.W.shape, rec.W_re.shape, rec.b.shape) == ((N_IN, gates * N_OUT), (N_OUT, gates * N_OUT),
                                                               (gates * N_OUT,))


def test_rec_unit_aliases_and_case():
    assert {"lstm", "nativelstm", "nativelstm2"} <= set(UNITS)
    assert type(make_unit("LSTM", n_in=2, n_out=3)) is type(make_unit("nativelstm2", n_in=2, n_out=3))


@pytest.mark.parametrize("name, unit", [("LSTMBlock", "lstmblock"), ("LSTMBlockCell", "lstmblock"),
                                        ("LSTMBlockFused", "lstmblock"), ("BasicLSTM", "standardlstm"),
                                        ("BasicLSTMCell", "standardlstm"), ("GRU", "gru"), ("GRUCell", "gru"),
                                        ("GRUBlock", "gru"), ("BasicRNN", "rnn"), ("NativeLstm2", "nativelstm2"),
                                        ("NativeLSTM", "nativelstm"), ("StandardLSTM", "standardlstm"),
                                        ("lstmp", "nativelstm"), ("NativeLstmLowMem", "nativelstm"),
                                        ("NativeLstmLowMemCell", "nativelstm"), ("GRUBlockV2", "gru"),
                                        ("RNN", "rnn"), ("BasicRNNCell", "rnn"), ("CudnnGRU", "gru")])
def test_rec_unit_tf_cell_names(name, unit):
    assert unit_key(name) == unit
    assert type(make_unit(name, n_in=2, n_out=3)) is UNITS[unit]


def test_rec_unit_unknown_cell_name_lists_tf_names_too():
    assert unit_key("LayerNormLSTM") is None and unit_key("cell") is None
    with pytest.raises(LayerConfigError, match=r"unknown unit 'LayerNormLSTM'.*known: .*basiclstm.*lstmblockfused"):
        make_unit("LayerNormLSTM", n_in=2, n_out=3)


def test_rec_unit_unknown_unit_lists_known():
    with pytest.raises(LayerConfigError,
                       match=r"layer .enc.*\"unit\": unknown unit 'lstmm'; did you mean 'lstm'\?; known: .*nativelstm"):
        make_unit("lstmm", n_in=2, n_out=3, name="enc")


def test_rec_unit_cudnnlstm_on_cpu_falls_back_to_lstmblock_and_logs(caplog):
    if tf.config.list_physical_devices("GPU"):
        pytest.skip("a GPU is visible")
    units._fallbacks_logged.discard("cudnnlstm")
    logger.addHandler(caplog.handler)
    try:
        with caplog.at_level(logging.WARNING, logger="returnn"):
            assert type(make_unit("CudnnLSTM", n_in=2, n_out=3, name="enc")) is UNITS["lstmblock"]
            make_unit("cudnnlstm", n_in=2, n_out=3, name="enc")
    finally:
        logger.removeHandler(caplog.handler)
    logged = [r.getMessage() for r in caplog.records if "cudnnlstm" in r.getMessage()]
    assert len(logged) == 1 and "GPU only" in logged[0] and "'lstmblock'" in logged[0]


def test_rec_unit_returnn_cell_without_implementation_is_named():
    with pytest.raises(LayerConfigError, match=r"'RHNCell' \(a RETURNN / TensorFlow cell\) is not implemented here; "
                                               r"known: .*cudnnlstm.*lstmp.*nativelstmlowmem"):
        make_unit("RHNCell", n_in=2, n_out=3)


def test_rec_unit_opts_checked_and_passed():
    rec = make_unit("nativelstm", n_in=2, n_out=3, unit_opts={"cell_grad_clip": 2.0})
    assert rec.cell_grad_clip == 2.0
    with pytest.raises(LayerConfigError, match=r"\"unit_opts\".*'standardlstm' does not take cell_grad_clip"):
        make_unit("standardlstm", n_in=2, n_out=3, unit_opts={"cell_grad_clip": 2.0})


def test_rec_unit_bad_direction_and_init():
    rec = make_unit("rnn", n_in=2, n_out=3, name="enc")
    with pytest.raises(LayerConfigError, match="direction"):
        rec(tf.zeros([2, 1, 2]), tf.constant([2]), direction=2)
    with pytest.raises(LayerConfigError, match="unknown initializer 'glorot_unifrom'"):
        make_unit("rnn", n_in=2, n_out=3, param_init="glorot_unifrom")


def test_rec_unit_accepts_any_layer_name():
    rec = make_unit("gru", n_in=2, n_out=3, name="enc/lstm-1")
    assert rec.layer_name == "enc/lstm-1" and rec.W.name == "enc_lstm_1/W:0"
    with pytest.raises(LayerConfigError, match=r"layer 'enc/lstm-1'.*direction"):
        rec(tf.zeros([2, 1, 2]), tf.constant([2]), direction=0)


def test_rec_unit_cudnnlstm_graph_traces_without_gpu():
    """No GPU here to run cuDNN; tracing checks the op signatures and the output shapes."""
    rec = lstm_units.CudnnLSTMUnit.__new__(lstm_units.CudnnLSTMUnit)
    lstm_units.LSTMUnitBase.__init__(rec, n_in=N_IN, n_out=N_OUT, name="cudnn")
    fn = tf.function(lambda x, seq_lens: rec(x, seq_lens, direction=-1))
    graph = fn.get_concrete_function(tf.TensorSpec([None, None, N_IN]), tf.TensorSpec([None], tf.int32))
    y, (c, h) = graph.structured_outputs
    assert y.shape.as_list() == [None, None, N_OUT] and c.shape.as_list() == h.shape.as_list() == [None, N_OUT]
    assert {"CudnnRNNV3", "CudnnRNNCanonicalToParamsV2"} <= {op.type for op in graph.graph.get_operations()}


def step_through(rec: RecUnit, x, seq_lens, state0, *, direction: int = 1):
    """The unit run frame by frame with ``step`` (as a rec loop runs it): (y [T, B, n] with zeros on padding,
    the state parts after each sequence's last valid frame)."""
    x = tf.constant(x) if isinstance(x, np.ndarray) else x
    seq_lens = tf.constant(seq_lens)
    if direction == -1:
        x = reverse_valid(x, seq_lens)
    state, ys, parts = state0, [], [flat_state(state0)]
    for t in range(x.shape[0]):
        y, state = rec.step(x[t], state)
        ys.append(y)
        parts.append(flat_state(state))
    y = tf.stack(ys) * tf.transpose(tf.sequence_mask(seq_lens, x.shape[0], y.dtype))[:, :, None]
    if direction == -1:
        y = reverse_valid(y, seq_lens)
    finals = [tf.gather(tf.stack([p[k] for p in parts], axis=1), seq_lens, batch_dims=1) for k in range(len(parts[0]))]
    return y, finals


def random_state(unit: RecUnit, batch: int, seed: int):
    rng = np.random.default_rng(seed)
    parts = [tf.constant(rng.normal(size=(batch, N_OUT)).astype(np.float32)) for _ in flat_state(unit.zero_state(1))]
    return tuple(parts) if len(parts) > 1 else parts[0]


@pytest.mark.parametrize("direction", [1, -1])
@pytest.mark.parametrize("unit", CPU_UNITS)
def test_rec_unit_steps_match_whole_sequence(unit, direction):
    x, seq_lens = random_batch(4)
    rec = make_unit(unit, n_in=N_IN, n_out=N_OUT, name=unit, bias_init=0.1, seed=2)
    state0 = random_state(rec, x.shape[1], seed=5)
    want_y, want_final = rec(tf.constant(x), tf.constant(seq_lens), direction=direction, initial_state=state0)
    y, finals = step_through(rec, x, seq_lens, state0, direction=direction)
    np.testing.assert_allclose(y.numpy(), want_y.numpy(), rtol=1e-5, atol=1e-5)
    assert len(finals) == len(flat_state(want_final))
    for got, want in zip(finals, flat_state(want_final)):
        np.testing.assert_allclose(got.numpy(), want.numpy(), rtol=1e-5, atol=1e-5)


def test_rec_unit_step_shapes_and_zero_state():
    for unit in CPU_UNITS:
        rec = make_unit(unit, n_in=N_IN, n_out=N_OUT, name=unit)
        state = rec.zero_state(3)
        y, new = rec.step(tf.zeros([3, N_IN]), state)
        assert y.shape == (3, N_OUT)
        assert tf.nest.map_structure(lambda t: tuple(t.shape), new) == tf.nest.map_structure(
            lambda t: tuple(t.shape), state)
        y_list, _ = rec.step(tf.ones([3, N_IN]), list(flat_state(state)) if isinstance(state, tuple) else state)
        np.testing.assert_allclose(y_list.numpy(), rec.step(tf.ones([3, N_IN]), state)[0].numpy())


def test_rec_unit_lstm_step_gradients_match_whole_sequence():
    x, seq_lens = random_batch(6)
    rec = make_unit("nativelstm", n_in=N_IN, n_out=N_OUT, name="grad", bias_init=0.2, seed=4)
    state0 = random_state(rec, x.shape[1], seed=7)
    x = tf.constant(x)
    weights = tf.range(1.0, 1.0 + N_OUT)

    def grads(run):
        with tf.GradientTape() as tape:
            tape.watch([x, *state0])
            y, (c, h) = run()
            loss = tf.reduce_sum(y * weights) + tf.reduce_sum(c * c) + tf.reduce_sum(h * weights)
        return [loss] + tape.gradient(loss, [rec.W, rec.W_re, rec.b, x, *state0])

    whole = grads(lambda: rec(x, tf.constant(seq_lens), initial_state=state0))
    stepped = grads(lambda: step_through(rec, x, seq_lens, state0))
    for name, got, want in zip(["loss", "W", "W_re", "b", "x", "c0", "h0"], stepped, whole):
        np.testing.assert_allclose(got.numpy(), want.numpy(), rtol=1e-5, atol=1e-5, err_msg=name)


def test_rec_unit_cudnnlstm_steps_like_the_other_lstm_units():
    """cuDNN itself needs a GPU; its step is the shared LSTM step on the same params."""
    rec = lstm_units.CudnnLSTMUnit.__new__(lstm_units.CudnnLSTMUnit)
    lstm_units.LSTMUnitBase.__init__(rec, n_in=N_IN, n_out=N_OUT, name="cudnn", bias_init=0.1, seed=1)
    ref = make_unit("standardlstm", n_in=N_IN, n_out=N_OUT, name="ref")
    for param in ("W", "W_re", "b"):
        getattr(ref, param).assign(getattr(rec, param))
    x, seq_lens = random_batch(8)
    want_y, want_final = ref(tf.constant(x), tf.constant(seq_lens))
    y, finals = step_through(rec, x, seq_lens, rec.zero_state(x.shape[1]))
    np.testing.assert_allclose(y.numpy(), want_y.numpy(), rtol=1e-5, atol=1e-5)
    for got, want in zip(finals, want_final):
        np.testing.assert_allclose(got.numpy(), want.numpy(), rtol=1e-5, atol=1e-5)


def test_rec_unit_step_with_weights_read_once_in_a_while_loop():
    """The loop can read the params once outside its body and pass them to every step."""
    rec = make_unit("gru", n_in=N_IN, n_out=N_OUT, name="gru", bias_init=0.3, seed=1)
    x, seq_lens = random_batch(9)
    full_lens = np.full_like(seq_lens, x.shape[0])

    @tf.function
    def run(x):
        weights = rec.read_weights()

        def body(t, state, ys):
            y, state = rec.step(x[t], state, weights=weights)
            return t + 1, state, ys.write(t, y)

        ys = tf.TensorArray(tf.float32, size=x.shape[0])
        _, state, ys = tf.while_loop(lambda t, *_: t < x.shape[0], body, (0, rec.zero_state(x.shape[1]), ys))
        return ys.stack(), state

    y, state = run(tf.constant(x))
    want_y, want_state = rec(tf.constant(x), tf.constant(full_lens))
    np.testing.assert_allclose(y.numpy(), want_y.numpy(), rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(state.numpy(), want_state.numpy(), rtol=1e-5, atol=1e-5)
