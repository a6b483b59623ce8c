"""One harness for every registered layer class (from ``returnn.*`` modules, aliases once), on its
``example`` config: it builds and its output matches the template; it traces once under ``tf.function``
for two batch shapes and gives the eager result; time-major input gives the same result; every
trainable param gets a finite, non-zero gradient; the param names and shapes stay those of
``goldens/params/<class>.json`` (``RETURNN_UPDATE_GOLDENS=1`` writes missing or changed goldens).
Inside a rec loop (the example as the unit of a rec layer): it builds with a one-frame template, or is
listed in ``NOT_LOOP_CAPABLE``; it traces once and gives the eager result; its stacked output is the
whole-sequence output unless listed in ``NOT_FRAMEWISE``.

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

from returnn.errors import LayerConfigError
from returnn.tensor.data import Data
from returnn.tensor.dim import batch_dim
from returnn.tensor.extern_data import seq_len_key
from returnn.testing import RandomBatch, build_network, random_batch, rec_loop_dict, rec_unit_network
from returnn.tf.layers import LAYER_CLASSES, LayerBase, get_layer_class
from returnn.tf.net_graph import DATA, LAYER, NetGraph, parse_ref
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


# Classes that only exist inside a beam search (tests/tf/layers/rec/test_beam_search.py covers them).
SEARCH_ONLY = {"choice_get_beam_scores", "choice_get_src_beams"}


@functools.cache
def _example(name: str) -> Example:
    cls = CLASSES[name]
    if name in SEARCH_ONLY:
        pytest.skip(f"{name} reads a searching choice; test_beam_search covers it")
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
    out_batch = out.tensor.shape[template.batch_dim_axis] if template.batch_dim_axis is not None else n_batch
    for dim, size in zip(template.dims, out.tensor.shape):
        if dim.is_batch:  # a layer may make its own batch dim (time_chunking: windows as batch entries)
            assert size == n_batch or dim is not batch_dim, f"{where}: batch size {size}, fed {n_batch}"
        elif dim.size is not None:
            assert size == dim.size, f"{where}: {dim.describe()} has size {size}"
        elif dim in out.dyn_sizes:
            lens = out.dyn_sizes[dim].numpy()
            assert lens.shape == (out_batch,) and lens.max() <= size, f"{where}: {dim.describe()} lengths {lens}"


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


# ---- inside a rec loop ----
# The loop runs over the extern key the example's "from" reads ("data", or the one other key it reads alone). The
# example's layer and every example_extra layer computed from that key run once per step (the key read as
# "data:source"); the other extra layers and extern keys stay outside, read as "base:x" / "base:data:KEY".
LOOP_EXAMPLE_CHANGES: dict[str, dict] = {  # class: options for every layer of that class in the example, in a loop
    "rec": {"direction": 1},  # a loop steps forward
    "window": {"window_right": 0},  # a step sees no later frames (also the window that the combine_dims example reads)
}
_TIME_AXIS = "the example works on the time axis, which one frame does not have"
# Classes whose example cannot run on one frame (the layer may work in a loop on other axes): the build error must
# name the sublayer, and a class that starts to build in a loop must leave this list.
NOT_LOOP_CAPABLE: dict[str, str] = {
    "conv": "convolves over the time axis", "pool": "pools over the time axis", "dot": _TIME_AXIS,
    "gather": _TIME_AXIS, "length": _TIME_AXIS, "merge_dims": _TIME_AXIS, "pad": _TIME_AXIS,
    "postfix_in_time": _TIME_AXIS, "prefix_in_time": _TIME_AXIS, "range_in_axis": _TIME_AXIS, "reduce": _TIME_AXIS,
    "reinterpret_data": _TIME_AXIS, "shift_axis": _TIME_AXIS, "slice": _TIME_AXIS, "split_dims": _TIME_AXIS,
    "swap_axes": _TIME_AXIS, "transpose": _TIME_AXIS, "softmax_over_spatial": _TIME_AXIS,
    "generic_attention": "its weights are a softmax over the time axis", "slice_nd": "its start is a length over T",
    "rec_last_output": "its example's rec layer runs over the time axis",
    "time_chunking": "cuts the time axis into windows", "time_unchunking": "its chunking layer needs the time axis",
}
# Loop-capable, but the stacked per-step outputs are not the whole-sequence output (both are still run).
NOT_FRAMEWISE: dict[str, str] = {
    "constant": "no input: the whole-sequence output has no time axis",
    "range": "no input: the whole-sequence output has no time axis",
    "variable": "no input: the whole-sequence output has no time axis",
    "get_last_hidden_state": "the whole sequence gives the state after the last frame, the loop the state at each step",
    "masked_computation": "the whole sequence packs the masked frames into a new axis, the loop holds the last output",
}
LOOP_CAPABLE = [name for name in CLASSES if name not in NOT_LOOP_CAPABLE]


def _with_loop_changes(net_dict: dict) -> dict:
    return {name: {**layer, **LOOP_EXAMPLE_CHANGES.get(layer["class"], {})} for name, layer in net_dict.items()}


def _rewrite_refs(layer: dict, rewrite) -> dict:
    """``layer`` with each ref of "from" and of its layer-valued options rewritten."""
    layer = dict(layer)
    fields = [field for field in get_layer_class(layer["class"]).Opts.ref_fields() if field in layer]
    for key in ["from"] * ("from" in layer) + fields:
        value = layer[key]
        if isinstance(value, str):
            layer[key] = rewrite(value)
        elif isinstance(value, (list, tuple)):
            layer[key] = [rewrite(item) if isinstance(item, str) else (rewrite(item[0]), *item[1:])
                          if isinstance(item, tuple) else item for item in value]
    return layer


def _loop_net_dict(name: str) -> dict:
    """The example as the unit of a rec layer ``output`` (see the comment above ``LOOP_EXAMPLE_CHANGES``)."""
    cls = CLASSES[name]
    net_dict = _with_loop_changes(_net_dict(cls, dict(cls.example)))
    sources = [parse_ref(ref) for ref, _ in parse_from(cls.example.get("from", cls.default_from), where=name)]
    key = sources[0].name if sources and all(ref.kind == DATA and ref.name == sources[0].name for ref in sources) \
        else "data"
    graph, stepped = NetGraph(net_dict), {}

    def per_step(layer: str) -> bool:
        if layer not in stepped:
            stepped[layer] = any((ref.kind == DATA and ref.name == key)
                                 or (ref.kind == LAYER and ref.layer in net_dict and per_step(ref.layer))
                                 for ref in graph.refs(layer))
        return stepped[layer]

    def rewrite(text: str) -> str:
        ref = parse_ref(text)
        if ref.kind == DATA:
            return "data:source" if ref.name == key else f"base:data:{ref.name}"
        return f"base:{text}" if ref.kind == LAYER and ref.layer in net_dict and not per_step(ref.layer) else text

    unit = {layer: _rewrite_refs(d, rewrite) for layer, d in net_dict.items() if layer == "output" or per_step(layer)}
    outside = {layer: d for layer, d in net_dict.items() if layer not in unit}
    return rec_loop_dict(unit, source="data" if key == "data" else f"data:{key}", outside=outside)


@functools.cache
def _loop_example(name: str) -> Network:
    cls = CLASSES[name]
    if name in SEARCH_ONLY:
        pytest.skip(f"{name} reads a searching choice; test_beam_search covers it")
    return build_network(_loop_net_dict(name), extern_data=cls.example_extern_data or DEFAULT_EXTERN)


@functools.cache
def _whole_reference(name: str) -> Network:
    """The whole-sequence network the loop is compared with: the harness's, or one with ``LOOP_EXAMPLE_CHANGES``."""
    cls = CLASSES[name]
    net_dict = _net_dict(cls, dict(cls.example))
    if _with_loop_changes(net_dict) == net_dict:
        return _example(name).net
    return build_network(_with_loop_changes(net_dict), extern_data=cls.example_extern_data or DEFAULT_EXTERN)


def _loop_key(net: Network) -> str:
    """The extern key the rec layer ``output`` loops over."""
    source = net.layers["output"].ctx.source_names[0]
    return "data" if source == "data" else source[len("data:"):]


@EVERY_CLASS
def test_every_layer_builds_inside_a_rec_loop_or_is_listed(name):
    try:
        net = _loop_example(name)
    except LayerConfigError as exc:
        assert name in NOT_LOOP_CAPABLE, f"does not build inside a rec loop: {exc}"
        assert str(exc).startswith("layer 'output/"), f"the error should name the sublayer: {exc}"
        return
    assert name not in NOT_LOOP_CAPABLE, "builds inside a rec loop now: remove it from NOT_LOOP_CAPABLE"
    frame, stacked = rec_unit_network(net).templates["output"], net.templates["output"]
    loop_time = stacked.dims[0]
    assert loop_time is net.extern_data[_loop_key(net)].time_dim
    assert loop_time not in frame.dims, f"the sublayer's template has the loop's time axis: {frame.describe()}"
    assert stacked.dims[1:] == frame.dims and stacked.dtype == frame.dtype


@pytest.mark.parametrize("name", LOOP_CAPABLE)
def test_every_layer_in_a_rec_loop_traces_once_and_matches_eager(name):
    net, batches = _loop_example(name), _example(name).batches
    forward = net.forward_function(["output"], train=False)
    for (n_batch, _), batch in zip(BATCH_SHAPES, batches):
        eager = net(batch, train=False)["output"]
        _check_matches_template(eager, net.templates["output"], n_batch)
        traced = forward(net.feed(batch))
        np.testing.assert_allclose(traced["output"].numpy(), eager.numpy(), rtol=1e-5, atol=1e-6)
        np.testing.assert_array_equal(traced[seq_len_key("output")].numpy(), eager.seq_lens.numpy())
    assert forward.experimental_get_tracing_count() == 1


@pytest.mark.parametrize("name", [name for name in LOOP_CAPABLE if name not in NOT_FRAMEWISE])
def test_every_framewise_or_causal_layer_in_a_rec_loop_stacks_the_whole_sequence_output(name):
    net, whole = _loop_example(name), _whole_reference(name)
    whole_params = whole.get_params()
    names = {key: key[len("output/"):] if key[len("output/"):] in whole_params else key for key in net.get_params()}
    assert sorted(names.values()) == sorted(whole_params), "the loop has other params than the whole sequence"
    net.load_params({key: whole_params[other].numpy() for key, other in names.items()})
    batch = _example(name).batches[-1]
    got, want = net(batch, train=False)["output"], whole(batch, train=False)["output"]
    names_got, names_want = [dim.name for dim in got.dims], [dim.name for dim in want.dims]
    assert sorted(names_got) == sorted(names_want), (got.describe(), want.describe())
    np.testing.assert_array_equal(got.seq_lens.numpy(), want.seq_lens.numpy())
    got = np.transpose(got.numpy(), [names_got.index(n) for n in names_want])
    valid = np.broadcast_to(want.mask_broadcast().numpy(), got.shape)
    np.testing.assert_allclose(got[valid], want.numpy()[valid], rtol=1e-5, atol=1e-5)
    assert not got[~valid].any(), "the loop output is not zero past each sequence's length"
