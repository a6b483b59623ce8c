import functools

import numpy as np
import pytest

from returnn.errors import LayerConfigError
from returnn.testing import build_network, run_network

EXTERN = {"data": {"dim": 4}, "classes": {"dim": 5, "sparse": True}}


_run = functools.partial(run_network, extern_data=EXTERN, n_batch=4, max_time=6)


def _masked_ref(x, lens, func):
    return np.stack([func(x[b, :n]) for b, n in enumerate(lens)])


def _logsumexp(v, axis=0):
    m = v.max(axis=axis, keepdims=True)
    return (m + np.log(np.exp(v - m).sum(axis=axis, keepdims=True))).squeeze(axis)


@pytest.mark.parametrize("mode, ref", [
    ("sum", lambda v: v.sum(0)), ("mean", lambda v: v.mean(0)), ("max", lambda v: v.max(0)),
    ("min", lambda v: v.min(0)), ("logsumexp", _logsumexp),
])
def test_reduce_over_time_ignores_padding(mode, ref):
    # padding holds a huge value: any leak into a valid result would show
    _, batch, out = _run({"output": {"class": "reduce", "mode": mode, "axes": "T"}}, pad_value=1e4)
    want = _masked_ref(batch["data"], batch.seq_lens("data"), ref)
    np.testing.assert_allclose(out["output"].numpy(), want, rtol=1e-5, atol=1e-5)
    assert out["output"].numpy().shape == (4, 4)


def test_reduce_feature_and_keep_dims():
    _, batch, out = _run({"output": {"class": "reduce", "mode": "sum", "axis": "F", "keep_dims": True}})
    np.testing.assert_allclose(out["output"].numpy(), batch["data"].sum(-1, keepdims=True), rtol=1e-5)
    assert out["output"].seq_lens is not None


def test_reduce_mean_over_time_and_feature():
    _, batch, out = _run({"output": {"class": "reduce", "mode": "mean", "axes": ["T", "F"]}}, pad_value=7.0)
    want = _masked_ref(batch["data"], batch.seq_lens("data"), lambda v: v.mean())
    np.testing.assert_allclose(out["output"].numpy(), want, rtol=1e-5)


def test_reduce_argmax_is_sparse_over_the_axis():
    net, batch, out = _run({"output": {"class": "reduce", "mode": "argmax", "axes": "F"}})
    np.testing.assert_array_equal(out["output"].numpy(), batch["data"].argmax(-1))
    assert out["output"].sparse_dim is net.extern_data["data"].feature_dim


def test_reduce_bad_axis_and_mode():
    with pytest.raises(LayerConfigError, match=r"layer 'output' \(class \"reduce\"\): \"axes\": axis 'Q'"):
        build_network({"output": {"class": "reduce", "mode": "sum", "axes": "Q"}}, extern_data=EXTERN)
    with pytest.raises(LayerConfigError, match=r"\"mode\": unknown 'summ'; did you mean 'sum'"):
        build_network({"output": {"class": "reduce", "mode": "summ", "axes": "T"}}, extern_data=EXTERN)
