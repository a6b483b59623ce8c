"""One harness for every registered layer class: its example config builds, matches its template,
traces once under tf.function for two batch shapes, and keeps the param names and shapes of
``goldens/params/<class>.json`` (``RETURNN_UPDATE_GOLDENS=1`` writes missing or changed goldens)."""

import json
import os

import numpy as np
import pytest
import tensorflow as tf

from returnn.tf.layers import LAYER_CLASSES
from returnn.testing import build_network, random_batch

DEFAULT_EXTERN = {"data": {"dim": 5}, "classes": {"dim": 4, "sparse": True}}
GOLDEN_DIR = os.path.join(os.path.dirname(os.path.abspath(__file__)), "goldens", "params")
CLASSES = sorted({cls.layer_class: cls for cls in LAYER_CLASSES.values() if cls.__module__.startswith("returnn.")}
                 .items())


def _build(cls):
    assert cls.example is not None, f'layer class "{cls.layer_class}" ({cls.__name__}) needs an `example` config'
    net_dict = {**cls.example_extra, "output": {"class": cls.layer_class, **cls.example, "is_output_layer": True}}
    return build_network(net_dict, extern_data=cls.example_extern_data or DEFAULT_EXTERN)


def _check_matches_template(out, template):
    assert out.dims == template.dims
    assert tf.as_dtype(out.tensor.dtype) == tf.as_dtype(template.dtype)
    for size, dim in zip(out.tensor.shape, template.dims):
        if dim.size is not None:
            assert size == dim.size, f"{template.describe()}: tensor shape {out.tensor.shape}"


@pytest.mark.parametrize("name, cls", CLASSES, ids=[name for name, _ in CLASSES])
def test_every_layer_example_matches_template_and_traces_once(name, cls):
    assert cls.__doc__ and "Config:" in cls.__doc__, (
        f"{cls.__name__} needs a docstring with a 'Config:' example (it is the layer reference, docs/layers.rst)")
    net = _build(cls)
    template = net.templates["output"]
    forward = net.forward_function(["output"], train=True)
    for n_batch, max_time in ((2, 4), (3, 7)):
        batch = random_batch(net.extern_data, n_batch=n_batch, max_time=max_time, seed=n_batch)
        _check_matches_template(net(batch, train=False)["output"], template)
        traced = forward(net.feed(batch))
        assert traced["output"].shape.rank == template.batch_ndim
        assert np.isfinite(np.asarray(traced["output"], dtype=np.float64)).all()
    assert forward.experimental_get_tracing_count() == 1


@pytest.mark.parametrize("name, cls", CLASSES, ids=[name for name, _ in CLASSES])
def test_every_layer_keeps_golden_params(name, cls):
    net = _build(cls)
    params = {key: list(var.shape) for key, var in sorted(net.get_params().items())}
    path = os.path.join(GOLDEN_DIR, f"{name}.json")
    if os.environ.get("RETURNN_UPDATE_GOLDENS") == "1":
        os.makedirs(GOLDEN_DIR, exist_ok=True)
        with open(path, "w", encoding="utf-8") as f:
            f.write("{\n" + ",\n".join(f" {json.dumps(k)}: {json.dumps(v)}" for k, v in params.items()) + "\n}\n")
    assert os.path.exists(path), f"missing {path}; run with RETURNN_UPDATE_GOLDENS=1 to write it"
    with open(path, encoding="utf-8") as f:
        assert params == json.load(f), f"params of the {name!r} example changed (names or shapes)"
