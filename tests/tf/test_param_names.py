"""Layer names that become the same variable name are refused before any param exists."""

import pytest
import tensorflow as tf

from returnn.errors import LayerConfigError
from returnn.testing import build_network, rec_loop_dict

EXTERN = {"data": {"dim": 3}}


def _linear(src: str) -> dict:
    return {"class": "linear", "from": src, "n_out": 2}


def test_names_sanitized_alike_are_refused_naming_both(monkeypatch):
    made = []
    monkeypatch.setattr(tf, "Variable", lambda *args, **kwargs: made.append(kwargs.get("name")))
    with pytest.raises(LayerConfigError, match=r"^layers 'a b' and 'a_b': both names become the variable name "
                                                r"prefix 'a_b' .*rename one of them$"):
        build_network({"a b": _linear("data"), "a_b": _linear("a b"), "output": {"class": "copy", "from": "a_b"}},
                      extern_data=EXTERN)
    assert made == []


def test_names_sanitized_alike_in_a_rec_unit_are_refused_also_when_split_by_the_loop_optimizer():
    unit = {"x:1": _linear("data:source"), "x 1": _linear("prev:output"),
            "output": {"class": "combine", "kind": "add", "from": ["x:1", "x 1"]}}
    with pytest.raises(LayerConfigError, match=r"^layers 'output/x:1' and 'output/x 1': .*'output/x_1'"):
        build_network(rec_loop_dict(unit, optimize_move_layers_out=True), extern_data=EXTERN)


def test_names_sanitized_alike_in_a_subnetwork_are_refused():
    sub = {"h+": _linear("data"), "h#": _linear("h+"), "output": {"class": "copy", "from": "h#"}}
    with pytest.raises(LayerConfigError, match=r"^layers 'output/h\+' and 'output/h#'"):
        build_network({"output": {"class": "subnetwork", "from": "data", "subnetwork": sub}}, extern_data=EXTERN)


def test_names_kept_apart_by_variable_names_still_build():
    names = ["a_b", "a-b", "a.b", "A_b", "a_b_"]
    net = {name: _linear("data") for name in names}
    net["output"] = {"class": "copy", "from": names}
    params = build_network(net, extern_data=EXTERN).get_params()
    assert sorted(params) == sorted(f"{name}/{p}" for name in names for p in ("W", "b"))
