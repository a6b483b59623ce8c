"""The rec layer with a unit dict (one ``tf.while_loop``, the unit once per step) against references that could
disagree: the same cell as a whole-sequence layer, numpy, the same layer outside the loop; ragged lengths."""

import io
import logging

import numpy as np
import pytest
import tensorflow as tf

from returnn.config import Config
from returnn.errors import LayerConfigError
from returnn.log import logger
from returnn.testing import build_network, random_batch, rec_loop_dict, rec_unit_network
from returnn.tf.network import Network
from returnn.tf.steps import make_train_step
from returnn.tf.updater import Updater

EXTERN = {"data": {"dim": 4}, "classes": {"dim": 5, "sparse": True}}
LENS_EXTERN = {**EXTERN, "stop": {"shape": (), "dtype": "int32"}}


def sigmoid(x):
    return 1 / (1 + np.exp(-x))


def gradients(net, batch, weights):
    """d/d(input frames, params by name) of the valid ``output`` frames weighted by ``weights`` [T, B, F] (each
    frame with its own weight, so that the gradient sees every frame)."""
    x = tf.constant(batch["data"])
    with tf.GradientTape() as tape:
        tape.watch(x)
        out = net({**batch, "data": x})["output"]
        loss = tf.reduce_sum(out.masked_tensor(0.0) * weights)
    params = net.get_params()
    grads = tape.gradient(loss, [x] + list(params.values()))
    return grads[0].numpy(), {name: tf.convert_to_tensor(g).numpy() for name, g in zip(params, grads[1:])}


@pytest.mark.parametrize("cell", [{"class": "rec", "unit": "lstm"}, {"class": "rnn_cell", "unit": "LSTMBlock"}],
                         ids=["rec_lstm", "rnn_cell"])
def test_rec_loop_steps_the_cell_like_the_whole_sequence_layer(cell):
    whole = build_network({"output": {**cell, "n_out": 5}}, extern_data=EXTERN)
    net = build_network(rec_loop_dict({"output": {**cell, "from": "data:source", "n_out": 5}}), extern_data=EXTERN)
    assert rec_unit_network(net).templates["output"].batch_shape == (None, 5)
    whole_params = whole.get_params()
    assert sorted(net.get_params()) == sorted(f"output/{name}" for name in whole_params)
    net.load_params({f"output/{name}": np.linspace(-1, 1, var.shape.num_elements()).reshape(var.shape)
                     for name, var in whole_params.items()})
    whole.load_params({name: net.get_params()[f"output/{name}"].numpy() for name in whole_params})
    batch = random_batch(net.extern_data, n_batch=3, max_time=6, seed=1, pad_value=5.0)
    mask = batch.mask("data").T  # [T, B]
    got, want = net(batch)["output"], whole(batch)["output"]
    assert got.dims[0] is net.extern_data["data"].time_dim and want.time_dim_axis == 0
    np.testing.assert_array_equal(got.seq_lens.numpy(), batch.seq_lens("data"))
    np.testing.assert_allclose(got.numpy()[mask], want.numpy()[mask], rtol=1e-5, atol=1e-5)
    assert not got.numpy()[~mask].any()

    weights = np.random.default_rng(0).standard_normal((6, 3, 5)).astype(np.float32)
    dx_loop, dp_loop = gradients(net, batch, weights)
    dx_whole, dp_whole = gradients(whole, batch, weights)
    np.testing.assert_allclose(dx_loop, dx_whole, rtol=1e-5, atol=1e-5)
    assert not dx_loop[~batch.mask("data")].any()  # padded frames do not reach the output
    for name, grad in dp_whole.items():
        assert np.abs(grad).sum() > 0, name
        np.testing.assert_allclose(dp_loop[f"output/{name}"], grad, rtol=1e-5, atol=1e-5, err_msg=name)


N = 3
EXPLICIT_LSTM = {  # gate order j, i, f, o, as the LSTM units have it
    "gates": {"class": "linear", "from": ["data:source", "prev:output"], "n_out": 4 * N, "activation": None},
    "g": {"class": "split", "from": "gates", "axis": "F", "num_splits": 4},
    "c": {"class": "eval", "from": ["g/1", "g/2", "g/0", "prev:c"],
          "eval": "tf.sigmoid(source(1)) * source(3) + tf.sigmoid(source(0)) * tf.tanh(source(2))"},
    "output": {"class": "eval", "from": ["g/3", "c"], "eval": "tf.sigmoid(source(0)) * tf.tanh(source(1))"},
}


def explicit_lstm_numpy(x, w, b):
    """One sequence x [T, n_in]: the h of each frame."""
    c, h, ys = np.zeros(N), np.zeros(N), []
    for frame in x:
        j, i, f, o = np.split(np.concatenate([frame, h]) @ w + b, 4)
        c = sigmoid(f) * c + sigmoid(i) * np.tanh(j)
        h = sigmoid(o) * np.tanh(c)
        ys.append(h)
    return np.array(ys)


def test_rec_loop_explicit_lstm_of_linear_and_eval_layers_matches_numpy():
    net = build_network(rec_loop_dict(EXPLICIT_LSTM), extern_data=EXTERN)
    body = rec_unit_network(net)
    assert {name: t.batch_shape for name, t in body.templates.items()} == {
        "gates": (None, 4 * N), "g": (None, 4 * N), "c": (None, N), "output": (None, N)}
    net.get_params()["output/gates/b"].assign(np.linspace(-1, 1, 4 * N).astype(np.float32))
    batch = random_batch(net.extern_data, n_batch=3, max_time=6, seed=2, pad_value=9.0)
    y = net(batch)["output"].numpy()
    w, b = (net.get_params()[f"output/gates/{p}"].numpy() for p in ("W", "b"))
    for s, n in enumerate(batch.seq_lens("data")):
        np.testing.assert_allclose(y[:n, s], explicit_lstm_numpy(batch["data"][s, :n], w, b), rtol=1e-5, atol=1e-6)
        assert not y[n:, s].any()


def test_rec_loop_padding_changes_nothing():
    net = build_network(rec_loop_dict(EXPLICIT_LSTM), extern_data=EXTERN)
    batch = random_batch(net.extern_data, n_batch=4, max_time=7, seed=3, pad_value=100.0)
    together = net(batch)["output"]
    lens = batch.seq_lens("data")
    assert len(set(lens)) > 2  # ragged
    for s, n in enumerate(lens):
        alone = net({"data": batch["data"][s:s + 1, :n], "data:seq_len": lens[s:s + 1]})["output"]
        assert alone.numpy().shape == (n, 1, N)
        np.testing.assert_allclose(together.numpy()[:n, s], alone.numpy()[:, 0], rtol=1e-6, atol=1e-7)
        assert not together.numpy()[n:, s].any()


INITIAL_OUTPUTS = [None, 0, "zeros", "ones", 2.5, "base:mean", "var"]


@pytest.mark.parametrize("initial_output", INITIAL_OUTPUTS, ids=[str(v) for v in INITIAL_OUTPUTS])
def test_rec_loop_prev_reads_initial_output_at_step_0(initial_output):
    """A running sum ``acc = prev:acc + x``: acc[t] = initial + x[0] + ... + x[t]."""
    opts = {} if initial_output is None else {"initial_output": initial_output}
    unit = {"output": {"class": "combine", "kind": "add", "from": ["prev:output", "data:source"], **opts}}
    outside = {"mean": {"class": "reduce", "from": "data", "mode": "mean", "axes": "T"}}  # [B, F], read by nothing else
    net = build_network(rec_loop_dict(unit, outside=outside), extern_data=EXTERN)
    batch = random_batch(net.extern_data, n_batch=3, max_time=5, seed=4)
    lens, x = batch.seq_lens("data"), batch["data"]
    initial = {None: 0.0, 0: 0.0, "zeros": 0.0, "ones": 1.0, 2.5: 2.5, "var": np.array([0.5, -1, 2, 0], np.float32),
               "base:mean": x.sum(1) / lens[:, None]}[initial_output]
    if initial_output == "var":
        assert list(net.get_params()) == ["output/output/initial_output"]
        net.get_params()["output/output/initial_output"].assign(initial)
    else:
        assert not net.get_params()
    y = net(batch)["output"].numpy()
    want = (np.cumsum(x, 1) + np.broadcast_to(initial, (3, 4))[:, None]).transpose(1, 0, 2)
    mask = batch.mask("data").T
    np.testing.assert_allclose(y[mask], want[mask], rtol=1e-5, atol=1e-6)


def test_rec_loop_initial_output_var_is_trained():
    net = build_network(rec_loop_dict({"output": {"class": "combine", "kind": "add", "initial_output": "var",
                                                  "from": ["prev:output", "data:source"]}}), extern_data=EXTERN)
    var = net.get_params()["output/output/initial_output"]
    assert [v.name for v in net.trainable_variables] == [var.name]
    batch = random_batch(net.extern_data, n_batch=3, max_time=5, seed=4)
    with tf.GradientTape() as tape:
        loss = tf.reduce_sum(net(batch)["output"].tensor)
    # every valid frame holds initial + a sum of frames: d/d(initial) = the number of valid frames in the batch
    np.testing.assert_allclose(tape.gradient(loss, var).numpy(), np.full(4, batch.seq_lens("data").sum()))


def _counter_net(**rec_opts):
    """No input: ``output`` = (step + 1) * mean of each sequence's data, until ``:i >= stop`` (a key of [B] ints)."""
    unit = {"output": {"class": "combine", "kind": "add", "from": ["prev:output", "base:mean"]},
            "end": {"class": "compare", "from": [":i", "data:stop"], "kind": "greater_equal"}}
    outside = {"mean": {"class": "reduce", "from": "data", "mode": "mean", "axes": "T"}}
    return build_network(rec_loop_dict(unit, source=[], outside=outside, **rec_opts), extern_data=LENS_EXTERN)


@pytest.mark.parametrize("include_eos", [False, True])
def test_rec_loop_end_layer_stops_each_sequence(include_eos):
    net = _counter_net(max_seq_len=6, include_eos=include_eos)
    batch = random_batch(net.extern_data, n_batch=4, max_time=3, seed=5)
    batch["stop"] = np.array([2, 0, 4, 9], np.int32)  # the end layer fires at step stop; 9: never before step 6
    out = net(batch)["output"]
    want_lens = np.minimum(batch["stop"] + (1 if include_eos else 0), 6)
    np.testing.assert_array_equal(out.seq_lens.numpy(), want_lens)
    y = out.numpy()
    assert y.shape == (6, 4, 4)  # ran until every sequence ended or max_seq_len
    mean = batch["data"].sum(1) / batch.seq_lens("data")[:, None]
    for s, n in enumerate(want_lens):
        np.testing.assert_allclose(y[:n, s], np.arange(1, n + 1)[:, None] * mean[s], rtol=1e-5, atol=1e-6)
        assert not y[n:, s].any()


def test_rec_loop_stops_when_every_sequence_ended():
    net = _counter_net(max_seq_len="max_len_from('base:data') * 2")
    batch = random_batch(net.extern_data, n_batch=3, max_time=4, seed=5)
    batch["stop"] = np.array([1, 3, 2], np.int32)
    out = net(batch)["output"]
    np.testing.assert_array_equal(out.seq_lens.numpy(), [1, 3, 2])
    assert out.numpy().shape[0] == 4  # steps 0..3: at step 3 the last sequence ends
    batch["stop"] = np.array([20, 20, 20], np.int32)
    assert net(batch)["output"].numpy().shape[0] == 8  # never ends: 2 * the longest data


def test_rec_loop_length_from_target_without_input():
    unit = {"output": {"class": "combine", "kind": "add", "from": ["prev:output", "base:mean"]}}
    outside = {"mean": {"class": "reduce", "from": "data", "mode": "mean", "axes": "T"}}
    net = build_network(rec_loop_dict(unit, source=[], outside=outside, target="classes"), extern_data=EXTERN)
    batch = random_batch(net.extern_data, n_batch=3, max_time={"data": 4, "classes": 6}, seed=6)
    out = net(batch)["output"]
    assert out.dims[0] is net.extern_data["classes"].time_dim and out.numpy().shape == (6, 3, 4)
    np.testing.assert_array_equal(out.seq_lens.numpy(), batch.seq_lens("classes"))


def test_rec_loop_reads_step_index_extern_frames_and_base_layers():
    unit = {"i": {"class": "cast", "from": ":i", "dtype": "float32", "is_output_layer": True},
            "cls": {"class": "copy", "from": "data:classes", "is_output_layer": True},
            "stop": {"class": "copy", "from": "data:stop", "is_output_layer": True},  # no time axis: the same each step
            "output": {"class": "combine", "kind": "add", "from": ["data:source", "base:mean"]}}
    outside = {"mean": {"class": "reduce", "from": "data", "mode": "mean", "axes": "T"}}
    net = build_network(rec_loop_dict(unit, outside=outside), extern_data=LENS_EXTERN)
    body = rec_unit_network(net)
    assert [body.templates[name].describe() for name in ("i", "cls", "stop")] == [
        "'i' []", "'cls' [B] sparse 'classes:sparse-dim'(5)", "'stop' [B]"]
    batch = random_batch(net.extern_data, n_batch=3, max_time=5, seed=7)
    batch["stop"] = np.array([3, 1, 4], np.int32)
    out = net(batch)
    lens, mask = batch.seq_lens("data"), batch.mask("data").T
    np.testing.assert_array_equal(out["output/i"].numpy(), np.arange(5))  # no batch axis: one index per step
    np.testing.assert_array_equal(out["output/cls"].numpy(), np.where(mask, batch["classes"].T, 0))
    np.testing.assert_array_equal(out["output/stop"].numpy(), np.where(mask, batch["stop"], 0))
    mean = batch["data"].sum(1) / lens[:, None]
    np.testing.assert_allclose(out["output"].numpy()[mask], (batch["data"] + mean[:, None]).transpose(1, 0, 2)[mask],
                               rtol=1e-5)


@pytest.mark.parametrize("ref", ["data", "data:data", "data:source"])
def test_rec_loop_data_refs_read_the_input_frame(ref):
    net = build_network(rec_loop_dict({"output": {"class": "copy", "from": ref}}), extern_data=EXTERN)
    batch = random_batch(net.extern_data, n_batch=3, max_time=5, seed=8, pad_value=3.0)
    mask = batch.mask("data")[..., None]
    np.testing.assert_array_equal(net(batch)["output"].numpy(), np.where(mask, batch["data"], 0).transpose(1, 0, 2))


ATT_EXTERN = {"data": {"dim": 4}, "enc": {"dim": 6}, "classes": {"dim": 5, "sparse": True}}


def test_rec_loop_attention_over_a_base_encoder_sees_valid_encoder_frames_only():
    outside = {"enc": {"class": "linear", "from": "data:enc", "n_out": 3, "activation": "tanh"}}
    unit = {"q": {"class": "linear", "from": ["data:source", "prev:att"], "n_out": 3},
            "energy": {"class": "dot", "from": ["base:enc", "q"], "red1": "F", "red2": "F", "var1": "T", "var2": None},
            "att_w": {"class": "softmax_over_spatial", "from": "energy", "is_output_layer": True},
            "att": {"class": "generic_attention", "weights": "att_w", "base": "base:enc"},
            "output": {"class": "copy", "from": "att"}}
    net = build_network(rec_loop_dict(unit, outside=outside), extern_data=ATT_EXTERN)
    enc_time = net.extern_data["enc"].time_dim
    assert rec_unit_network(net).templates["att_w"].dims[1] is enc_time
    batch = random_batch(net.extern_data, n_batch=3, max_time={"data": 5, "enc": 7, "classes": 5}, seed=9,
                         pad_value=50.0)
    out = net(batch)
    weights = out["output/att_w"]  # [T_dec, B, T_enc]
    assert weights.dims[0] is net.extern_data["data"].time_dim and weights.dims[2] is enc_time
    w, dec_lens, enc_lens = weights.numpy(), batch.seq_lens("data"), batch.seq_lens("enc")
    assert len(set(enc_lens)) > 1 and (enc_lens != dec_lens).any()
    enc = out["enc"].numpy()
    wq, bq = (net.get_params()[f"output/q/{p}"].numpy() for p in ("W", "b"))
    for s in range(3):
        n, m = dec_lens[s], enc_lens[s]
        np.testing.assert_allclose(w[:n, s].sum(-1), 1.0, rtol=1e-5)
        assert not w[:n, s, m:].any() and not w[n:, s].any()
        att = np.zeros(3)  # numpy: the same decoder step by step over the valid encoder frames
        for t in range(n):
            energy = enc[s, :m] @ (np.concatenate([batch["data"][s, t], att]) @ wq + bq)
            want_w = np.exp(energy - energy.max()) / np.exp(energy - energy.max()).sum()
            np.testing.assert_allclose(w[t, s, :m], want_w, rtol=1e-4, atol=1e-6)
            att = want_w @ enc[s, :m]
            np.testing.assert_allclose(out["output"].numpy()[t, s], att, rtol=1e-4, atol=1e-6)


def test_rec_loop_loss_of_a_sublayer_equals_the_loss_outside_on_stacked_outputs():
    s_layer = {"class": "linear", "from": ["data:source", "prev:s"], "n_out": 3, "activation": "tanh"}
    softmax = {"class": "softmax", "loss": "ce", "target": "classes"}
    inside = build_network(rec_loop_dict({"s": s_layer, "prob": {**softmax, "from": "s"},
                                          "output": {"class": "copy", "from": "s"}}), extern_data=EXTERN)
    outside = build_network({"rec": {"class": "rec", "from": "data", "unit": {"s": s_layer, "output": {
        "class": "copy", "from": "s"}}}, "prob": {**softmax, "from": "rec"}}, extern_data=EXTERN)
    names = {"output/s/W": "rec/s/W", "output/s/b": "rec/s/b", "output/prob/W": "prob/W", "output/prob/b": "prob/b"}
    assert sorted(inside.get_params()) == sorted(names)
    outside.load_params({names[k]: v.numpy() for k, v in inside.get_params().items()})
    assert list(inside.loss_entries()) == ["output/prob"]
    batch = random_batch(inside.extern_data, n_batch=3, max_time=6, seed=10, pad_value=4.0)

    def loss_and_grads(net, key):
        with tf.GradientTape() as tape:
            outputs = net(batch, train=True)
            values = net.loss_values(outputs, batch)
            total = net.total_loss(values)
        params = net.get_params()
        grads = dict(zip(params, tape.gradient(total, list(params.values()))))
        return outputs, values[key], grads

    out_in, loss_in, grads_in = loss_and_grads(inside, "output/prob")
    out_out, loss_out, grads_out = loss_and_grads(outside, "prob")
    assert int(loss_in.num_frames) == batch.seq_lens("classes").sum() == int(loss_out.num_frames)
    np.testing.assert_allclose(loss_in.loss.numpy(), loss_out.loss.numpy(), rtol=1e-5)
    np.testing.assert_allclose(loss_in.error.numpy(), loss_out.error.numpy())
    mask = batch.mask("data").T
    np.testing.assert_allclose(out_in["output/prob"].numpy()[mask], out_out["prob"].numpy()[mask], rtol=1e-5)
    for name, other in names.items():
        assert np.abs(grads_in[name].numpy()).sum() > 0, name
        np.testing.assert_allclose(grads_in[name].numpy(), grads_out[other].numpy(), rtol=1e-5, atol=1e-6,
                                   err_msg=name)


def test_rec_loop_causal_self_attention_equals_the_whole_sequence_layer():
    layer = {"class": "self_attention", "attention_left_only": True, "num_heads": 2, "total_key_dim": 4, "n_out": 6}
    net = build_network(rec_loop_dict({"output": {**layer, "from": "data:source"}}), extern_data=EXTERN)
    whole = build_network({"output": layer}, extern_data=EXTERN)
    assert whole.load_params({"output/QKV": net.get_params()["output/output/QKV"].numpy()}) == ["output/QKV"]
    batch = random_batch(net.extern_data, n_batch=3, max_time=6, seed=11, pad_value=7.0)
    got, want = net(batch)["output"].numpy(), whole(batch)["output"].numpy().transpose(1, 0, 2)
    mask = batch.mask("data").T
    np.testing.assert_allclose(got[mask], want[mask], rtol=1e-5, atol=1e-6)
    assert not got[~mask].any()


TRACE_SHAPES = ((2, 4), (3, 7))  # (n_batch, max_time)


@pytest.mark.parametrize("kind", ["input", "end"])
def test_rec_loop_forward_function_traces_once(kind):
    if kind == "input":
        net = build_network(rec_loop_dict(EXPLICIT_LSTM), extern_data=EXTERN)
    else:
        net = _counter_net(max_seq_len="max_len_from('base:data') + 2")
    forward = net.forward_function(["output"])
    for n_batch, max_time in TRACE_SHAPES:
        batch = random_batch(net.extern_data, n_batch=n_batch, max_time=max_time, seed=n_batch)
        batch["stop"] = np.arange(n_batch, dtype=np.int32) + 1
        traced, eager = forward(net.feed(batch)), net(batch)["output"]
        np.testing.assert_allclose(traced["output"].numpy(), eager.numpy(), rtol=1e-6)
        np.testing.assert_array_equal(traced["output:seq_len"].numpy(), eager.seq_lens.numpy())
    assert forward.experimental_get_tracing_count() == 1


def test_rec_loop_train_step_traces_once_and_trains_the_loop_params():
    unit = {**EXPLICIT_LSTM, "prob": {"class": "softmax", "from": "output", "loss": "ce", "target": "classes"}}
    net = build_network(rec_loop_dict(unit), extern_data=EXTERN)
    updater = Updater(Config({"learning_rate": 0.1}), net.trainable_variables)
    step = make_train_step(net, updater)
    for n_batch, max_time in TRACE_SHAPES:
        batch = random_batch(net.extern_data, n_batch=n_batch, max_time=max_time, seed=n_batch)
        before = {name: var.numpy() for name, var in net.get_params().items()}
        want = net.loss_values(net(batch, train=True), batch)["output/prob"].loss.numpy()
        losses, total, _ = step(net.feed(batch, with_targets=True))
        loss, _, frames = losses["output/prob"]
        np.testing.assert_allclose(loss.numpy(), want, rtol=1e-5)
        assert frames.numpy() == batch.seq_lens("classes").sum()
        assert all(np.any(var.numpy() != before[name]) for name, var in net.get_params().items())
    assert step.experimental_get_tracing_count() == 1


def _build_loop(unit, **rec_opts):
    return build_network(rec_loop_dict(unit, **rec_opts), extern_data=EXTERN)


def _add(*sources, **opts):
    return {"class": "combine", "kind": "add", "from": list(sources), **opts}


LOOP_ERRORS = {  # what is wrong: (net dict, the error: rec layer, sublayer, key)
    "unknown sublayer": (rec_loop_dict({"lin2": {"class": "linear", "from": "data:source", "n_out": 4},
                                        "output": _add("lin", "data:source")}),
                         r"^layer 'output/output': no layer 'lin'; did you mean 'lin2'\?; defined: lin2, output$"),
    "prev: of an unknown layer": (rec_loop_dict({"output": _add("prev:outptu", "data:source")}),
                                  r"^layer 'output/output': no layer 'prev:outptu'; did you mean 'output'\?"),
    "base: of an unknown layer": (rec_loop_dict({"output": _add("base:enc", "data:source")}),
                                  r"^layer 'output/output': 'base:enc': the enclosing network has no layer 'enc'; "
                                  r"defined: output$"),
    "cycle without prev:": (rec_loop_dict({"a": _add("b", "data:source"), "b": {"class": "copy", "from": "a"},
                                           "output": {"class": "copy", "from": "b"}}),
                            r"^network has a cycle: output/b -> output/a -> output/b \(only 'prev:' may close a "
                            r"loop\)"),
    "no output": (rec_loop_dict({"a": {"class": "copy", "from": "data:source"}}),
                  r"^layer 'output' \(class \"rec\"\): \"unit\": the subnetwork needs an \"output\" layer; it has: a$"),
    "no loop length": (rec_loop_dict({"output": {"class": "cast", "from": ":i", "dtype": "float32"}}, source=[]),
                       r"^layer 'output' \(class \"rec\"\): cannot know the loop length: no \"from\" with a time axis, "
                       r"no \"target\""),
    "end without max_seq_len": (rec_loop_dict({"output": {"class": "cast", "from": ":i", "dtype": "float32"},
                                               "end": {"class": "compare", "from": ":i", "kind": "greater",
                                                       "value": 3}}, source=[]),
                                r"^layer 'output' \(class \"rec\"\): has an \"end\" layer but no \"max_seq_len\""),
    "data:source without input": (rec_loop_dict({"output": {"class": "copy", "from": "data:source"}}, source=[],
                                                max_seq_len=3),
                                  r"^layer 'output/output': 'data:source': the rec layer has no input"),
    "bad initial_output": (rec_loop_dict({"output": _add("prev:output", "data:source", initial_output="twos")}),
                           r"^layer 'output' \(class \"rec\"\): sublayer 'output': \"initial_output\": expected 0, "
                           r"\"zeros\", \"ones\", a number, \"base:LAYER\" or \"var\", got 'twos'$"),
    "initial_output of an unknown layer": (
        rec_loop_dict({"output": _add("prev:output", "data:source", initial_output="base:enc")}),
        r"^layer 'output' \(class \"rec\"\): sublayer 'output': \"initial_output\" 'base:enc': no layer 'enc' outside "
        r"the loop; defined: output$"),
    "prev: outside a rec unit": ({"output": _add("prev:output", "data")},
                                 r"^layer 'output': 'prev:output': prev: is only valid inside the \"unit\" dict of a "
                                 r"rec layer$"),
    ":i outside a rec unit": ({"output": {"class": "cast", "from": ":i", "dtype": "float32"}},
                              r"^layer 'output': ':i': ':i' is only valid inside the \"unit\" dict of a rec layer$"),
}


@pytest.mark.parametrize("what", list(LOOP_ERRORS))
def test_rec_loop_errors_name_the_rec_layer_the_sublayer_and_the_key(what):
    net_dict, message = LOOP_ERRORS[what]
    with pytest.raises(LayerConfigError, match=message):
        build_network(net_dict, extern_data=EXTERN)


def test_rec_loop_debug_print_layer_output_template_shows_the_sublayers():
    config = Config({"extern_data": EXTERN, "debug_print_layer_output_template": True,
                     "network": rec_loop_dict({"s": {"class": "linear", "from": ["data:source", "prev:s"], "n_out": 3},
                                               "output": {"class": "copy", "from": "s"}})})
    stream = io.StringIO()
    handler, level = logging.StreamHandler(stream), logger.level
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    try:
        Network.from_config(config)
    finally:
        logger.removeHandler(handler)
        logger.setLevel(level)
    assert stream.getvalue().splitlines() == [
        "layer 'output' (rec): 'output' ['data:time',B,'s:feature'(3)] float32",
        "  layer 'output/s' (linear): 's' [B,'s:feature'(3)] float32",
        "  layer 'output/output' (copy): 'output' [B,'s:feature'(3)] float32"]


def test_rec_loop_layer_reading_only_its_own_prev():
    net = build_network(rec_loop_dict({"output": {"class": "linear", "from": "prev:output", "n_out": 2,
                                                  "initial_output": "ones"}}, source=[], max_seq_len=3),
                        extern_data=EXTERN)
    batch = random_batch(net.extern_data, n_batch=2, max_time=3, seed=12)
    w, b = (net.get_params()[f"output/output/{p}"].numpy() for p in ("W", "b"))
    want, y = [], np.ones(2)
    for _ in range(3):
        y = y @ w + b
        want.append(y)
    np.testing.assert_allclose(net(batch)["output"].numpy(), np.stack([want, want], axis=1), rtol=1e-5)


def test_unit_dict_rejects_unit_string_options_and_a_wrong_n_out():
    unit = {"output": {"class": "linear", "from": ["prev:output", "data:source"], "n_out": 4}}
    for extra, message in (({"direction": -1}, r'"direction": -1 with a "unit" dict'),
                           ({"unit_opts": {}}, r"'unit_opts': options of a unit string"),
                           ({"n_out": 5}, r'"n_out" 5 does not match the "output" sublayer')):
        with pytest.raises(LayerConfigError, match=r"layer 'dec' \(class \"rec\"\): " + message):
            Network({"dec": {"class": "rec", "from": "data", "unit": unit, "is_output_layer": True, **extra}},
                    extern_data=EXTERN)
    Network({"dec": {"class": "rec", "from": "data", "unit": unit, "is_output_layer": True, "n_out": 4}},
            extern_data=EXTERN)


def test_rec_loop_reads_a_base_layer_with_its_own_time_axis_whole():
    """A loop over "data" reading base:enc, which has the same time axis: each step sees all of enc."""
    net = build_network(rec_loop_dict(
        {"output": {"class": "reduce", "mode": "sum", "axis": "T", "from": "base:enc"}},
        outside={"enc": {"class": "copy", "from": "data"}}), extern_data={"data": {"dim": 3}})
    batch = random_batch(net.extern_data, n_batch=3, max_time=5, seed=7)
    out = net(batch, train=False)["output"].copy_as_batch_major().numpy()
    mask = batch.mask("data")
    want = (batch["data"] * mask[..., None]).sum(axis=1)
    for b, n in enumerate(batch.seq_lens("data")):
        np.testing.assert_allclose(out[b, :n], np.repeat(want[b][None], n, axis=0), rtol=1e-5)
