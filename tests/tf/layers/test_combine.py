import functools

import numpy as np
import pytest

from returnn.errors import LayerConfigError
from returnn.testing import build_network, run_network

EXTERN = {"data": {"dim": 3}, "vec": {"shape": (3,), "time_dim_axis": None}}


_run = functools.partial(run_network, extern_data=EXTERN, n_batch=3, max_time=6, check_output=False)


@pytest.mark.parametrize("kind, ref", [
    ("add", lambda a, b: a + b),
    ("sub", lambda a, b: a - b),
    ("mul", lambda a, b: a * b),
    ("truediv", lambda a, b: a / b),
    ("maximum", np.maximum),
    ("minimum", np.minimum),
    ("average", lambda a, b: (a + b) / 2),
    ("squared_difference", lambda a, b: (a - b) ** 2),
])
def test_combine_kinds_broadcast_like_numpy(kind, ref):
    net, batch, out = _run({"output": {"class": "combine", "kind": kind, "from": ["data", "data:vec"]}})
    a, b = batch["data"], batch["vec"][:, None, :]
    valid = batch.mask("data")
    np.testing.assert_allclose(out["output"].numpy()[valid], ref(a, b)[valid], rtol=1e-5)
    assert out["output"].dims == net.extern_data["data"].dims
    np.testing.assert_array_equal(out["output"].seq_lens.numpy(), batch.seq_lens("data"))


def test_combine_reversed_sources_broadcast_to_larger():
    _, batch, out = _run({"output": {"class": "combine", "kind": "sub", "from": ["data:vec", "data"]}})
    np.testing.assert_allclose(out["output"].numpy(), batch["vec"][:, None, :] - batch["data"], rtol=1e-6)


def test_combine_bad_kind_and_arity():
    with pytest.raises(LayerConfigError, match=r"\"kind\": unknown 'ad'; did you mean 'add'"):
        build_network({"output": {"class": "combine", "kind": "ad", "from": ["data", "data"]}}, extern_data=EXTERN)
    with pytest.raises(LayerConfigError, match=r"'sub' needs exactly 2 sources, got 3"):
        build_network({"output": {"class": "combine", "kind": "sub", "from": ["data"] * 3}}, extern_data=EXTERN)


def test_eval_expression_over_sources():
    _, batch, out = _run({"output": {"class": "eval", "from": ["data", "data:vec"],
                                     "eval": "source(0) * tf.sigmoid(source(1)) + k", "eval_locals": {"k": 2.0}}})
    want = batch["data"] * (1 / (1 + np.exp(-batch["vec"][:, None, :]))) + 2.0
    np.testing.assert_allclose(out["output"].numpy(), want, rtol=1e-5)


def test_eval_out_type_changes_feature_dim():
    net, batch, out = _run({"output": {"class": "eval", "eval": "tf.reduce_sum(source(0), axis=-1, keepdims=True)",
                                       "out_type": {"dim": 1}}})
    assert net.templates["output"].dim == 1
    np.testing.assert_allclose(out["output"].numpy()[..., 0], batch["data"].sum(-1), rtol=1e-5)


def test_eval_syntax_error_names_layer():
    with pytest.raises(LayerConfigError, match=r"layer 'output' \(class \"eval\"\): \"eval\": syntax error"):
        build_network({"output": {"class": "eval", "eval": "source(0) +"}}, extern_data=EXTERN)
