"""One harness for every registered layer class (from ``returnn.*`` modules, aliases once), on its
``example`` config: it builds and its output matches the template; it traces once under ``tf.function``
for two batch shapes and gives the eager result; time-major input gives the same result; every
trainable param gets a finite, non-zero gradient; the param names and shapes stay those of
``goldens/params/<class>.json`` (``RETURNN_UPDATE_GOLDENS=1`` writes missing or changed goldens).

Each class's network is built once (``_example``) and shared by the checks; a new per-class check is
one more ``@EVERY_CLASS`` test function taking ``name``.
"""

import dataclasses
import functools
import json
import os

import numpy as np
import pytest
import tensorflow as tf

from returnn.tensor.data import Data
from returnn.tensor.extern_data import seq_len_key
from returnn.testing import RandomBatch, build_network, random_batch
from returnn.tf.layers import LAYER_CLASSES, LayerBase
from returnn.tf.network import Network, parse_from

# The goldens were written with these; a class that needs other inputs sets ``example_extern_data``.
DEFAULT_EXTERN = {"data": {"dim": 5}, "classes": {"dim": 4, "sparse": True}}
GOLDEN_DIR = os.path.join(os.path.dirname(os.path.abspath(__file__)), "goldens", "params")
BATCH_SHAPES = ((2, 4), (3, 7))  # (n_batch, max_time); seq lengths differ within each batch
CLASSES: dict[str, type[LayerBase]] = dict(sorted(
    {cls.layer_class: cls for cls in LAYER_CLASSES.values() if cls.__module__.startswith("returnn.")}.items()))
EVERY_CLASS = pytest.mark.parametrize("name", list(CLASSES))

# Params whose gradient is zero by design in the example: {class: {param name ("output/W"): why}}. Empty so
# far; prefer an example in which every param matters.
NO_GRADIENT: dict[str, dict[str, str]] = {}


@dataclasses.dataclass
class Example:
    """A class's example network, a batch of each of ``BATCH_SHAPES`` and the eager ``output`` on each
    (computed right after building, before any training call can move state such as moving averages)."""

    net: Network
    batches: list[RandomBatch]
    eager: list[Data]


def _net_dict(cls: type[LayerBase], example: dict) -> dict:
    return {**cls.example_extra, "output": {"class": cls.layer_class, **example, "is_output_layer": True}}


@functools.cache
def _example(name: str) -> Example:
    cls = CLASSES[name]
    assert cls.example is not None, f'layer class "{name}" ({cls.__name__}) needs an `example` config'
    net = build_network(_net_dict(cls, dict(cls.example)), extern_data=cls.example_extern_data or DEFAULT_EXTERN)
    batches = [random_batch(net.extern_data, n_batch=n_batch, max_time=max_time, seed=n_batch)
               for n_batch, max_time in BATCH_SHAPES]
    return Example(net, batches, [net(batch, train=False)["output"] for batch in batches])


def _check_matches_template(out: Data, template: Data, n_batch: int) -> None:
    where = f"output {out.describe()}, tensor shape {out.tensor.shape}"
    assert out.dims == template.dims, f"{where}; template {template.describe()}"
    assert tf.as_dtype(out.tensor.dtype) == tf.as_dtype(template.dtype), f"{where}: dtype {out.tensor.dtype}"
    assert out.tensor.shape.rank == template.batch_ndim, where
    for dim, size in zip(template.dims, out.tensor.shape):
        if dim.is_batch:
            assert size == n_batch, f"{where}: batch size {size}, fed {n_batch}"
        elif dim.size is not None:
            assert size == dim.size, f"{where}: {dim.describe()} has size {size}"
        elif dim in out.dyn_sizes:
            lens = out.dyn_sizes[dim].numpy()
            assert lens.shape == (n_batch,) and lens.max() <= size, f"{where}: {dim.describe()} lengths {lens}"


def test_harness_finds_the_layer_families():
    # 44 classes when this was written; far fewer means the registry walk broke and the checks below see nothing
    assert len(CLASSES) >= 40, sorted(CLASSES)


@EVERY_CLASS
def test_every_layer_documents_a_config_example(name):
    cls = CLASSES[name]
    assert cls.__doc__ and "Config:" in cls.__doc__, (
        f"{cls.__name__} needs a docstring with a 'Config:' example (it is the layer reference, docs/layers.rst)")


@EVERY_CLASS
def test_every_layer_example_matches_template(name):
    ex = _example(name)
    for (n_batch, _), out in zip(BATCH_SHAPES, ex.eager):
        _check_matches_template(out, ex.net.templates["output"], n_batch)
        assert np.isfinite(np.asarray(out.tensor, dtype=np.float64)).all(), out.describe()


@EVERY_CLASS
def test_every_layer_traces_once_and_matches_eager(name):
    ex = _example(name)
    forward = ex.net.forward_function(["output"], train=False)
    for batch in ex.batches:
        eager = ex.net(batch, train=False)["output"]  # not ex.eager: a training call may have moved state since
        traced = forward(ex.net.feed(batch))
        np.testing.assert_allclose(traced["output"].numpy(), eager.numpy(), rtol=1e-5, atol=1e-6)
        if eager.seq_lens is not None:
            np.testing.assert_array_equal(traced[seq_len_key("output")].numpy(), eager.seq_lens.numpy())
    assert forward.experimental_get_tracing_count() == 1
    # Training mode (dropout, batch statistics) differs from eager eval, so only its shape and values are checked.
    forward_train = ex.net.forward_function(["output"], train=True)
    for batch in ex.batches:
        traced = forward_train(ex.net.feed(batch))
        assert traced["output"].shape.rank == ex.net.templates["output"].batch_ndim
        assert np.isfinite(np.asarray(traced["output"], dtype=np.float64)).all()
    assert forward_train.experimental_get_tracing_count() == 1


def _reads_only_data(cls: type[LayerBase]) -> bool:
    sources = parse_from(cls.example.get("from", cls.default_from), where=cls.layer_class) if cls.example else []
    return bool(sources) and all(ref in ("data", "data:data") for ref, _ in sources)


@pytest.mark.parametrize("name", [name for name, cls in CLASSES.items() if _reads_only_data(cls)])
def test_every_layer_same_result_on_time_major_input(name):
    cls, ex = CLASSES[name], _example(name)
    example = dict(cls.example)
    sources = parse_from(example.get("from", cls.default_from), where=name)
    example["from"] = [("tm", axis) if axis is not None else "tm" for _, axis in sources]
    net_dict = {"tm": {"class": "reinterpret_data", "from": "data", "enforce_time_major": True},
                **_net_dict(cls, example)}
    net = build_network(net_dict, extern_data=cls.example_extern_data or DEFAULT_EXTERN)
    batch, a = ex.batches[-1], ex.eager[-1]
    b = net(batch, train=False)["output"]
    names_a, names_b = [d.name for d in a.dims], [d.name for d in b.dims]
    assert sorted(names_a) == sorted(names_b), (a.describe(), b.describe())
    perm = [names_b.index(n) for n in names_a]
    np.testing.assert_allclose(np.transpose(b.numpy(), perm), a.numpy(), rtol=1e-5, atol=1e-6)
    if a.seq_lens is not None:
        np.testing.assert_array_equal(b.seq_lens.numpy(), a.seq_lens.numpy())


@EVERY_CLASS
def test_every_trainable_param_gets_a_gradient(name):
    ex = _example(name)
    net, batch = ex.net, ex.batches[-1]
    params = {var.name.split(":")[0]: var for var in net.trainable_variables}
    if not tf.as_dtype(net.templates["output"].dtype).is_floating or not params:
        pytest.skip("integer or bool output" if params else "no trainable params")
    # Fixed random weights on valid frames, so every output element counts with its own sign.
    weights = np.random.default_rng(0).standard_normal(ex.eager[-1].tensor.shape).astype(np.float32)
    with tf.GradientTape() as tape:
        out = net(batch, train=False)["output"]
        loss = tf.reduce_sum(tf.cast(out.masked_tensor(0.0), tf.float32) * weights)
    grads = dict(zip(params, tape.gradient(loss, list(params.values()))))
    for key, grad in grads.items():
        if key in NO_GRADIENT.get(name, {}):
            continue
        assert grad is not None, f"{key}: no gradient (the param does not reach the output)"
        grad = tf.convert_to_tensor(grad).numpy()
        assert np.isfinite(grad).all(), f"{key}: non-finite gradient {grad}"
        assert np.any(grad != 0), f"{key}: gradient is all zero"


@EVERY_CLASS
def test_every_layer_keeps_golden_params(name):
    params = {key: list(var.shape) for key, var in sorted(_example(name).net.get_params().items())}
    path = os.path.join(GOLDEN_DIR, f"{name}.json")
    if os.environ.get("RETURNN_UPDATE_GOLDENS") == "1":
        os.makedirs(GOLDEN_DIR, exist_ok=True)
        with open(path, "w", encoding="utf-8") as f:
            f.write("{\n" + ",\n".join(f" {json.dumps(k)}: {json.dumps(v)}" for k, v in params.items()) + "\n}\n")
    assert os.path.exists(path), f"missing {path}; run with RETURNN_UPDATE_GOLDENS=1 to write it"
    with open(path, encoding="utf-8") as f:
        assert params == json.load(f), f"params of the {name!r} example changed (names or shapes)"
