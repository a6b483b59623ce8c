import functools

import numpy as np
import pytest

from returnn.errors import LayerConfigError
from returnn.testing import build_network, run_network

EXTERN = {"data": {"dim": 3}, "classes": {"dim": 4, "sparse": True}, "vec": {"shape": (3,), "time_dim_axis": None}}


_run = functools.partial(run_network, extern_data=EXTERN, n_batch=3, max_time=5)


def test_cast_sparse_to_float_drops_sparsity():
    _, batch, out = _run({"output": {"class": "cast", "from": "data:classes", "dtype": "float32"}})
    assert not out["output"].sparse and out["output"].numpy().dtype == np.float32
    np.testing.assert_array_equal(out["output"].numpy(), batch["classes"].astype(np.float32))
    _, batch, out = _run({"output": {"class": "cast", "from": "data:classes", "dtype": "int64"}})
    assert out["output"].sparse
    with pytest.raises(LayerConfigError, match=r"\"dtype\": unknown dtype 'flaot32'"):
        build_network({"output": {"class": "cast", "dtype": "flaot32"}}, extern_data=EXTERN)


@pytest.mark.parametrize("kind, ref", [("equal", np.equal), ("not_equal", np.not_equal), ("less", np.less),
                                       ("less_equal", np.less_equal), ("greater", np.greater),
                                       ("greater_equal", np.greater_equal)])
def test_compare_kinds_value_and_two_sources(kind, ref):
    _, batch, out = _run({"output": {"class": "compare", "from": "data:classes", "kind": kind, "value": 2}})
    np.testing.assert_array_equal(out["output"].numpy(), ref(batch["classes"], 2))
    _, batch, out = _run({"output": {"class": "compare", "from": ["data", "data:vec"], "kind": kind}})
    np.testing.assert_array_equal(out["output"].numpy(), ref(batch["data"], batch["vec"][:, None]))


def test_compare_needs_value_or_two_sources():
    with pytest.raises(LayerConfigError, match=r"layer 'output' \(class \"compare\"\): needs a \"value\""):
        build_network({"output": {"class": "compare", "kind": "less"}}, extern_data=EXTERN)
    with pytest.raises(LayerConfigError, match=r"\"kind\": unknown 'lesser'"):
        build_network({"output": {"class": "compare", "kind": "lesser", "value": 1}}, extern_data=EXTERN)


def test_switch_layers_and_numbers_broadcast():
    net, batch, out = _run({"cond": {"class": "compare", "from": "data", "kind": "greater", "value": 0.0},
                            "output": {"class": "switch", "condition": "cond", "true_from": "data",
                                       "false_from": "data:vec"}})
    x, v = batch["data"], batch["vec"][:, None]
    np.testing.assert_allclose(out["output"].numpy(), np.where(x > 0, x, v))
    np.testing.assert_array_equal(out["output"].seq_lens.numpy(), batch.seq_lens("data"))
    _, batch, out = _run({"cond": {"class": "compare", "from": "data", "kind": "less", "value": 0.0},
                          "output": {"class": "switch", "condition": "cond", "true_from": 1.0, "false_from": -1.0}})
    np.testing.assert_array_equal(out["output"].numpy(), np.where(batch["data"] < 0, 1.0, -1.0))
    _, batch, out = _run({"output": {"class": "switch", "condition": False, "true_from": "data:vec",
                                     "false_from": "data"}})
    np.testing.assert_array_equal(out["output"].numpy(), batch["data"])


def test_switch_condition_must_be_bool():
    with pytest.raises(LayerConfigError, match=r"layer 'output' \(class \"switch\"\): \"condition\": expected a "
                                               r"bool layer"):
        build_network({"output": {"class": "switch", "condition": "data", "true_from": 1.0, "false_from": 0.0}},
                      extern_data=EXTERN)
