"""rnn_cell and get_last_hidden_state against a numpy LSTM, over whole sequences and step by step."""

import numpy as np
import pytest

from returnn.errors import LayerConfigError
from returnn.testing import build_network, random_batch, rec_loop_dict, rec_unit_network

EXTERN = {"data": {"dim": 4}, "classes": {"dim": 5, "sparse": True}}


def sigmoid(x):
    return 1 / (1 + np.exp(-x))


def lstm_numpy(x, params, *, direction=1):
    """One sequence x [T, n_in] of valid frames, gate order j, i, f, o: (y [T, n] in input order, c_t and h_t
    [T, n] after each processed frame)."""
    w, w_re, b = params["W"], params["W_re"], params["b"]
    n = w_re.shape[0]
    c, h, ys, cs = np.zeros(n), np.zeros(n), [], []
    for frame in x[::direction]:
        j, i, f, o = np.split(frame @ w + h @ w_re + b, 4)
        c = sigmoid(f) * c + sigmoid(i) * np.tanh(j)
        h = sigmoid(o) * np.tanh(c)
        ys.append(h)
        cs.append(c)
    ys, cs = np.array(ys).reshape(-1, n), np.array(cs).reshape(-1, n)
    return ys[::direction], cs, ys


def layer_params(net, name):
    return {k.split("/")[-1]: v.numpy().astype(np.float64) for k, v in net.get_params().items()
            if k.startswith(f"{name}/")}


def test_rnn_cell_over_sequences_matches_numpy_and_rec():
    net = build_network({"output": {"class": "rnn_cell", "unit": "LSTMBlock", "n_out": 3},
                         "rec": {"class": "rec", "unit": "lstmblock", "n_out": 3, "is_output_layer": True}},
                        extern_data=EXTERN)
    assert {k: tuple(v.shape) for k, v in net.get_params().items() if k.startswith("output/")} == {
        k.replace("rec/", "output/"): tuple(v.shape) for k, v in net.get_params().items() if k.startswith("rec/")}
    net.layers["output"].params["b"].assign(np.linspace(-1, 1, 12).astype(np.float32))
    batch = random_batch(net.extern_data, n_batch=3, max_time=6, seed=2, pad_value=4.0)
    out = net(batch)["output"]
    assert out.dims == net.templates["output"].dims and out.time_dim_axis == 0
    y, p = out.numpy(), layer_params(net, "output")
    for b, n in enumerate(batch.seq_lens("data")):
        np.testing.assert_allclose(y[:n, b], lstm_numpy(batch["data"][b, :n], p)[0], rtol=1e-5, atol=1e-5)
        assert not y[n:, b].any()


@pytest.mark.parametrize("unit, params", [("LSTMBlock", {"W": (4, 12), "W_re": (3, 12), "b": (12,)}),
                                          ("GRU", {"W": (4, 9), "W_re": (3, 9), "b": (9,)}),
                                          ("BasicRNN", {"W": (4, 3), "W_re": (3, 3), "b": (3,)})])
def test_rnn_cell_in_loop_is_one_step(unit, params):
    layer = {"class": "rnn_cell", "unit": unit, "n_out": 3}
    loop_net = build_network(rec_loop_dict({"output": {**layer, "from": "data:source"}}), extern_data=EXTERN)
    assert {k: tuple(v.shape) for k, v in loop_net.get_params().items()} == {
        f"output/output/{k}": v for k, v in params.items()}
    template = rec_unit_network(loop_net).templates["output"]
    assert template.batch_shape == (None, 3) and template.time_dim is None
    whole = build_network({"output": layer}, extern_data=EXTERN)
    loop_net.load_params({f"output/{k}": v.numpy() for k, v in whole.get_params().items()})
    batch = random_batch(whole.extern_data, n_batch=3, max_time=5, seed=6)
    got, want = loop_net(batch)["output"].numpy(), whole(batch)["output"].numpy()
    for b, n in enumerate(batch.seq_lens("data")):
        np.testing.assert_allclose(got[:n, b], want[:n, b], rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("name, unit", [("LSTMBlock", "lstmblock"), ("lstmblockcell", "lstmblock"),
                                        ("LSTMBlockFused", "lstmblock"), ("BasicLSTM", "standardlstm"),
                                        ("GRU", "gru"), ("BasicRNN", "rnn"), ("NativeLstm2", "nativelstm2"),
                                        ("LSTM", "lstm")])
def test_rnn_cell_tf_cell_names(name, unit):
    net = build_network({"output": {"class": "rnn_cell", "unit": name, "n_out": 2}}, extern_data=EXTERN)
    assert net.layers["output"].unit_name == unit


def test_rnn_cell_errors_and_weights_init():
    with pytest.raises(LayerConfigError, match=r"layer 'output' \(class \"rnn_cell\"\): \"unit\": unknown unit "
                                               r"'LayerNormLSTM'; known: .*basiclstm.*basicrnn.*gru.*lstmblock"):
        build_network({"output": {"class": "rnn_cell", "unit": "LayerNormLSTM", "n_out": 2}}, extern_data=EXTERN)
    with pytest.raises(LayerConfigError, match=r"layer 'output' \(class \"rnn_cell\"\): missing required option "
                                               r"\"unit\""):
        build_network({"output": {"class": "rnn_cell", "n_out": 2}}, extern_data=EXTERN)
    with pytest.raises(LayerConfigError, match=r"\(class \"rnn_cell\"\): \"unit_opts\": unit 'gru' does not take "
                                               r"forget_bias"):
        build_network({"output": {"class": "rnn_cell", "unit": "GRU", "n_out": 2, "unit_opts": {"forget_bias": 0}}},
                      extern_data=EXTERN)
    net = build_network({"output": {"class": "rnn_cell", "unit": "GRU", "n_out": 2, "weights_init": 0.5}},
                        extern_data=EXTERN)
    p = layer_params(net, "output")
    assert (p["W"] == 0.5).all() and (p["W_re"] == 0.5).all() and (p["b"] == 0).all()


def enc_dec_net(**last):
    return {"lstm": {"class": "rec", "unit": "nativelstm2", "n_out": 3, "bias_init": 0.1},
            "lstm_bw": {"class": "rec", "unit": "nativelstm2", "n_out": 3, "direction": -1},
            "output": {"class": "get_last_hidden_state", "from": "lstm", **last}}


@pytest.mark.parametrize("key, part", [("*", "ch"), (None, "ch"), ("flat", "ch"), ("c", "c"), ("h", "h")])
def test_get_last_hidden_state_of_a_whole_sequence_lstm(key, part):
    net = build_network(enc_dec_net(key=key, n_out=3 * len(part)), extern_data=EXTERN)
    batch = random_batch(net.extern_data, n_batch=4, max_time=6, seed=1, pad_value=3.0)
    out = net(batch)["output"]
    assert out.dims == net.templates["output"].dims and net.templates["output"].batch_shape == (None, 3 * len(part))
    p = layer_params(net, "lstm")
    for b, n in enumerate(batch.seq_lens("data")):
        _, cs, hs = lstm_numpy(batch["data"][b, :n], p)
        want = np.concatenate([{"c": cs, "h": hs}[name][-1] for name in part])
        np.testing.assert_allclose(out.numpy()[b], want, rtol=1e-5, atol=1e-5)


def test_get_last_hidden_state_combines_sources():
    net = build_network({**enc_dec_net(), "output": {"class": "get_last_hidden_state", "from": ["lstm", "lstm_bw"],
                                                     "n_out": 12},
                         "sum": {"class": "get_last_hidden_state", "from": ["lstm", "lstm_bw"], "combine": "add",
                                 "key": "h", "is_output_layer": True}}, extern_data=EXTERN)
    batch = random_batch(net.extern_data, n_batch=3, max_time=5, seed=2)
    out = net(batch)
    fw, bw = layer_params(net, "lstm"), layer_params(net, "lstm_bw")
    for b, n in enumerate(batch.seq_lens("data")):
        x = batch["data"][b, :n]
        (_, c_fw, h_fw), (_, c_bw, h_bw) = lstm_numpy(x, fw), lstm_numpy(x, bw, direction=-1)
        np.testing.assert_allclose(out["output"].numpy()[b], np.concatenate([c_fw[-1], h_fw[-1], c_bw[-1], h_bw[-1]]),
                                   rtol=1e-5, atol=1e-5)
        np.testing.assert_allclose(out["sum"].numpy()[b], h_fw[-1] + h_bw[-1], rtol=1e-5, atol=1e-5)


def test_get_last_hidden_state_inside_a_loop_reads_the_current_state():
    net = build_network(rec_loop_dict({
        "s": {"class": "rnn_cell", "unit": "LSTMBlock", "n_out": 3, "from": "data:source", "is_output_layer": True},
        "output": {"class": "get_last_hidden_state", "from": "s", "n_out": 6},
        "h": {"class": "get_last_hidden_state", "from": "s", "key": "h", "is_output_layer": True}}),
        extern_data=EXTERN)
    net.get_params()["output/s/b"].assign(np.linspace(-1, 1, 12).astype(np.float32))
    x = np.random.default_rng(3).normal(size=(2, 5, 4)).astype(np.float32)
    got = {name: data.numpy() for name, data in net({"data": x, "data:seq_len": np.array([5, 5], np.int32)}).items()}
    p = layer_params(net, "output/s")
    for b in range(2):
        _, cs, hs = lstm_numpy(x[b], p)
        np.testing.assert_allclose(got["output"][:, b], np.concatenate([cs, hs], axis=1), rtol=1e-5, atol=1e-5)
        np.testing.assert_allclose(got["output/h"][:, b], hs, rtol=1e-5, atol=1e-5)
        np.testing.assert_allclose(got["output/s"][:, b], hs, rtol=1e-5, atol=1e-5)


def test_get_last_hidden_state_through_base_of_a_subnetwork():
    net = build_network({"enc": {"class": "rec", "unit": "gru", "n_out": 3},
                         "output": {"class": "subnetwork", "from": [], "subnetwork": {
                             "output": {"class": "get_last_hidden_state", "from": "base:enc", "n_out": 3}}},
                         "direct": {"class": "get_last_hidden_state", "from": "enc", "is_output_layer": True}},
                        extern_data=EXTERN)
    batch = random_batch(net.extern_data, n_batch=3, max_time=5, seed=4)
    out = net(batch)
    y = out["enc"].numpy()
    want = np.stack([y[n - 1, b] for b, n in enumerate(batch.seq_lens("data"))])  # a GRU's state is its output
    np.testing.assert_allclose(out["output"].numpy(), want, rtol=1e-6)
    np.testing.assert_allclose(out["direct"].numpy(), want, rtol=1e-6)


def test_get_last_hidden_state_errors():
    with pytest.raises(LayerConfigError, match=r"layer 'output' \(class \"get_last_hidden_state\"\): \"n_out\" 3 does "
                                               r"not match the last state size 6 \(lstm \[B,6\]; .*c and h"):
        build_network(enc_dec_net(n_out=3), extern_data=EXTERN)
    with pytest.raises(LayerConfigError, match=r"\"from\": 'lin' has no last state with \"key\" '\*'.*"
                                               r"layer 'lin' has no sublayers"):
        build_network({"lin": {"class": "linear", "n_out": 3},
                       "output": {"class": "get_last_hidden_state", "from": "lin"}}, extern_data=EXTERN)
    with pytest.raises(LayerConfigError, match=r"\"from\": 'lstm' has no last state with \"key\" 'x'.*"
                                               r"no sublayer 'last_state/x'.*'lstm/last_state/c'"):
        build_network(enc_dec_net(key="x"), extern_data=EXTERN)
    with pytest.raises(LayerConfigError, match=r"\"combine\": expected one of concat, add, got 'sum'"):
        build_network(enc_dec_net(combine="sum"), extern_data=EXTERN)
    with pytest.raises(LayerConfigError, match=r"\"combine\": \"add\" needs states of one size, got lstm \[B,6\], "
                                               r"enc \[B,4\]"):
        build_network({**enc_dec_net(), "enc": {"class": "rec", "unit": "gru", "n_out": 4},
                       "output": {"class": "get_last_hidden_state", "from": ["lstm", "enc"], "combine": "add"}},
                      extern_data=EXTERN)
    with pytest.raises(LayerConfigError, match=r"needs \"from\""):
        build_network({"output": {"class": "get_last_hidden_state", "from": []}}, extern_data=EXTERN)
