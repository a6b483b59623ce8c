import functools

import numpy as np
import pytest

from returnn.errors import LayerConfigError
from returnn.testing import build_network, run_network

EXTERN = {"data": {"dim": 5}, "classes": {"dim": 4, "sparse": True}, "other": {"dim": 2}}


_run = functools.partial(run_network, extern_data=EXTERN, n_batch=3, max_time=7, check_output=False)


def test_source_layer_reads_extern_key():
    net, batch, out = _run({"output": {"class": "source", "data_key": "other"}})
    np.testing.assert_array_equal(out["output"].numpy(), batch["other"])
    assert out["output"].dims == net.extern_data["other"].dims
    with pytest.raises(LayerConfigError, match=r"no extern data key 'nope'"):
        build_network({"output": {"class": "source", "data_key": "nope"}}, extern_data=EXTERN)


def test_copy_layer_keeps_seq_lens():
    _, batch, out = _run({"output": {"class": "copy"}})
    np.testing.assert_array_equal(out["output"].numpy(), batch["data"])
    np.testing.assert_array_equal(out["output"].seq_lens.numpy(), batch.seq_lens("data"))


def test_dropout_layer_identity_in_eval_scaled_in_training():
    _, batch, out = _run({"output": {"class": "dropout", "dropout": 0.25}}, train=True)
    y, x = out["output"].numpy(), batch["data"]
    kept = y != 0
    assert 0 < kept.mean() < 1
    np.testing.assert_allclose(y[kept], x[kept] / 0.75, rtol=1e-6)
    _, batch, out = _run({"output": {"class": "dropout", "dropout": 0.25}}, train=False)
    np.testing.assert_array_equal(out["output"].numpy(), batch["data"])


@pytest.mark.parametrize("name, ref", [
    ("relu", lambda x: np.maximum(x, 0)),
    ("tanh", np.tanh),
    ("sigmoid", lambda x: 1 / (1 + np.exp(-x))),
    ("2*sigmoid-1", lambda x: 2 / (1 + np.exp(-x)) - 1),
])
def test_activation_layer_matches_numpy(name, ref):
    _, batch, out = _run({"output": {"class": "activation", "activation": name}})
    valid = batch.mask("data")
    np.testing.assert_allclose(out["output"].numpy()[valid], ref(batch["data"])[valid], rtol=1e-5, atol=1e-6)


def test_activation_layer_softmax_and_unknown_name():
    _, batch, out = _run({"output": {"class": "activation", "activation": "softmax"}})
    x = batch["data"]
    want = np.exp(x) / np.exp(x).sum(-1, keepdims=True)
    np.testing.assert_allclose(out["output"].numpy(), want, rtol=1e-5)
    with pytest.raises(LayerConfigError, match=r"layer 'output' \(class \"activation\"\): \"activation\": unknown "
                                               r"'rleu'"):
        build_network({"output": {"class": "activation", "activation": "rleu"}}, extern_data=EXTERN)


def test_concat_layer_feature_axis():
    _, batch, out = _run({"a": {"class": "linear", "n_out": 2},
                          "output": {"class": "concat", "from": [("data", "F"), ("a", "F")]}})
    y = out["output"].numpy()
    assert y.shape == (3, 7, 7)
    np.testing.assert_array_equal(y[..., :5], batch["data"])
    np.testing.assert_array_equal(y[..., 5:], out["a"].numpy())


def test_concat_layer_time_axis_joins_valid_frames():
    net, batch, out = _run({"output": {"class": "concat", "from": [("data", "T"), ("data", "T")]}})
    y, lens, x = out["output"].numpy(), batch.seq_lens("data"), batch["data"]
    np.testing.assert_array_equal(out["output"].seq_lens.numpy(), 2 * lens)
    for b, n in enumerate(lens):
        np.testing.assert_array_equal(y[b, :2 * n], np.concatenate([x[b, :n], x[b, :n]]))
    assert net.templates["output"].time_dim is net.templates["output"].dims[1]


def test_concat_layer_other_dims_must_match():
    with pytest.raises(LayerConfigError, match="dims other than the concatenated axis differ"):
        build_network({"output": {"class": "concat", "from": [("data", "F"), ("data:other", "T")]}},
                      extern_data=EXTERN)
