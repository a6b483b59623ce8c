"""Every layer class of the shape/value/conv/norm/attention families: its ``example`` config builds, its output
matches its template, and it runs under one ``tf.function`` trace for two batch shapes (the check the
registry-wide ``test_every_layer.py`` harness does, for the classes of this branch)."""

import numpy as np
import pytest
import tensorflow as tf

from returnn.tensor.extern_data import seq_len_key
from returnn.testing import build_network, random_batch
from returnn.tf.layers import LAYER_CLASSES

EXTERN = {"data": {"dim": 6}, "classes": {"dim": 4, "sparse": True}}
MODULES = ("shape", "reduce", "reinterpret", "slicing", "padding", "values", "elementwise", "conv", "norm",
           "attention")
CLASSES = sorted(name for name, cls in LAYER_CLASSES.items()
                 if cls.__module__.rsplit(".", 1)[-1] in MODULES and name == cls.layer_class)
EXAMPLES = {name: {"class": name, **LAYER_CLASSES[name].example} for name in CLASSES}


def _net(name):
    cls = LAYER_CLASSES[name]
    net_dict = {"output": dict(EXAMPLES[name]), **{k: dict(v) for k, v in cls.example_extra.items()}}
    return build_network(net_dict, extern_data=EXTERN)


def test_every_family_layer_has_an_example():
    assert len(CLASSES) >= 30, CLASSES
    for name in CLASSES:
        assert LAYER_CLASSES[name].example is not None, name


@pytest.mark.parametrize("name", CLASSES)
def test_layer_example_matches_template_and_traces_once(name):
    net = _net(name)
    template = net.templates["output"]
    forward = net.forward_function(["output"])
    for n_batch, max_time in ((2, 5), (3, 8)):
        batch = random_batch(net.extern_data, n_batch=n_batch, max_time=max_time, seed=n_batch)
        eager = net(batch)["output"]
        assert eager.dims == template.dims
        assert eager.tensor.dtype == tf.as_dtype(template.dtype)
        assert eager.tensor.shape.rank == template.batch_ndim
        for dim, size in zip(template.dims, eager.tensor.shape):
            if not dim.is_dynamic:
                assert size == dim.size, (dim, eager.tensor.shape)
            elif dim.is_batch:
                assert size == n_batch
        inputs = {key: batch[key] for key in net.input_signature()}
        traced = forward(inputs)
        np.testing.assert_allclose(traced["output"].numpy(), eager.numpy(), rtol=1e-5, atol=1e-6)
        if eager.seq_lens is not None:
            np.testing.assert_array_equal(traced[seq_len_key("output")].numpy(), eager.seq_lens.numpy())
    assert forward.experimental_get_tracing_count() == 1


def _from_data(example):
    src = example.get("from", "data")
    return src == "data" or (isinstance(src, list) and all(s == "data" for s in src))


def _time_major_example(name):
    example = dict(EXAMPLES[name])
    src = example.get("from", "data")
    example["from"] = [s.replace("data", "tm") for s in src] if isinstance(src, list) else "tm"
    return {"tm": {"class": "reinterpret_data", "from": "data", "enforce_time_major": True}, "output": example}


@pytest.mark.parametrize("name", [n for n in CLASSES if _from_data(EXAMPLES[n])])
def test_layer_example_same_result_on_time_major_input(name):
    extra = {k: dict(v) for k, v in LAYER_CLASSES[name].example_extra.items()}
    batch_major = build_network({"output": dict(EXAMPLES[name]), **extra}, extern_data=EXTERN)
    time_major = build_network({**_time_major_example(name), **extra}, extern_data=EXTERN)
    batch = random_batch(batch_major.extern_data, n_batch=3, max_time=6, seed=5)
    a, b = batch_major(batch)["output"], time_major(batch)["output"]
    names_a, names_b = [d.name for d in a.dims], [d.name for d in b.dims]
    assert sorted(names_a) == sorted(names_b)
    perm = [names_b.index(n) for n in names_a]
    np.testing.assert_allclose(np.transpose(b.numpy(), perm), a.numpy(), rtol=1e-5, atol=1e-6)
