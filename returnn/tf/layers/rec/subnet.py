"""The ``rec`` layer with a ``unit`` dict: a subnetwork evaluated once per time step in one ``tf.while_loop``.

Templates: the unit's layers get frame templates (no time axis) in a ``LoopNetwork``; the rec layer's
output is the ``output`` sublayer stacked over time (time-major). The loop runs over the input's time
axis, else over the length of ``target`` / ``size_target``, else up to ``max_seq_len`` and per sequence
until its ``end`` layer says so. Losses of sublayers are computed on their stacked outputs, masked as
the same layer's loss outside a loop would be.
"""

from __future__ import annotations

import dataclasses
import re
from typing import Any, Mapping, Sequence

import tensorflow as tf

from returnn.errors import LayerConfigError
from returnn.tensor.data import Data
from returnn.tensor.dim import Dim, spatial_dim
from returnn.tf.layers.base import LayerContext
from returnn.tf.layers.rec.loop_net import LoopScope, frame_template, index_data, stacked_template
from returnn.tf.losses import LossEntry, make_loss
from returnn.tf.net_graph import NetGraph, is_root

_MAX_LEN_FROM = re.compile(r"max_len_from\(\s*['\"]([^'\"]+)['\"]\s*\)")


@dataclasses.dataclass
class LoopPlan:
    """What the template pass decided: the loop network, where its length comes from, what is stacked."""

    loop: Any  # the Network of the loop body
    scope: LoopScope
    time_dim: Dim
    has_input: bool
    length_key: str | None  # "data:KEY" whose time axis gives the loop length
    max_seq_len: Any  # int, expression string or None
    stacked: dict[str, Data]  # sublayer -> stacked template (output, losses, is_output_layer, read from outside)
    losses: dict[str, Any]  # sublayer -> (Loss, scale, target layer key or None)


def plan_loop(ctx: LayerContext, unit: Mapping[str, Any], *, size_target: str | None,
              max_seq_len: Any) -> LoopPlan:
    """Templates of the unit's layers and the loop's length source; errors name the rec layer and sublayer."""
    if "output" not in unit:
        raise ctx.error(f'"unit": the subnetwork needs an "output" layer; it has: {", ".join(unit) or "none"}')
    graph = NetGraph(unit, path_of=lambda name: f"{ctx.path}/{name}")
    roots = [name for name, layer in unit.items() if is_root(name, layer)] + (["end"] if "end" in unit else [])
    has_input = bool(ctx.sources)
    length_key = None
    if has_input:
        src = ctx.input_template()
        if src.time_dim is None or src.batch_dim_axis is None:
            raise ctx.error(f"needs input with a batch and a time axis, got {src.describe()}")
        time_dim, input_frame = src.time_dim, frame_template(src)
    else:
        input_frame = None
        target = size_target or ctx.common.target
        if target is not None:
            whole = ctx.network.data_template(target, requested_by=ctx.name)
            ctx.dependency(f"data:{target}")
            if whole.time_dim is None:
                raise ctx.error(f'"target" {target!r}: has no time axis to take the loop length from')
            time_dim, length_key = whole.time_dim, f"data:{target}"
        elif max_seq_len is not None or "end" in unit:
            time_dim = spatial_dim(None, f"{ctx.name}:time")
            if max_seq_len is None:
                raise ctx.error('has an "end" layer but no "max_seq_len"; give "max_seq_len" (a number or an '
                                "expression like \"max_len_from('base:encoder') * 3\")")
        else:
            raise ctx.error('cannot know the loop length: no "from" with a time axis, no "target" / "size_target", '
                            'no "max_seq_len" with an "end" layer')
    if isinstance(max_seq_len, str):
        for ref in _MAX_LEN_FROM.findall(max_seq_len):
            ctx.dependency(ref[len("base:"):] if ref.startswith("base:") else ref)
    del graph
    scope = LoopScope(ctx, roots=roots, input_frame=input_frame)
    loop = ctx.make_subnetwork(unit, extern_data={}, loop=scope)
    for name in scope.prev_reads:
        _check_initial_output(ctx, name, loop._pending[name].ctx.common.initial_output)
    stacked, losses = {}, {}
    for name, layer in unit.items():
        if name not in loop.templates:
            continue
        if name == "output" or is_root(name, layer):
            stacked[name] = stacked_template(loop.templates[name], time_dim, name=f"{ctx.name}/{name}")
    for name in loop.templates:
        common = loop._pending[name].ctx.common
        if common.loss:
            target = common.target or "classes"
            whole_target = ctx.network.target_template(target, requested_by=ctx.name)
            loss = make_loss(common.loss, common.loss_opts or {}, output=stacked[name], target=whole_target,
                             target_name=target, where=loop._pending[name].ctx.where())
            losses[name] = (loss, common.loss_scale)
    return LoopPlan(loop, scope, time_dim, has_input, length_key, max_seq_len, stacked, losses)


def _check_initial_output(ctx: LayerContext, name: str, spec: Any) -> None:
    """A known kind of ``initial_output``; a ``base:x`` is built before the rec layer, as one of its inputs."""
    if isinstance(spec, str) and spec.startswith("base:"):
        outer = spec[len("base:"):]
        if not outer.startswith(("data:", "base:")) and outer.split("/", 1)[0] not in ctx.network.net_dict:
            raise ctx.error(f'sublayer {name!r}: "initial_output" {spec!r}: no layer {outer!r} outside the loop; '
                            f"defined: {', '.join(ctx.network.net_dict)}")
        ctx.dependency(outer)
    elif not (spec is None or (isinstance(spec, str) and spec in ("zeros", "ones", "var"))
              or (isinstance(spec, (int, float)) and not isinstance(spec, bool))):
        raise ctx.error(f'sublayer {name!r}: "initial_output": expected 0, "zeros", "ones", a number, "base:LAYER" or '
                        f'"var", got {spec!r}')


def _initial_output(ctx: LayerContext, name: str, template: Data, spec: Any, batch_size: Any,
                    refs: Mapping[str, Data], variables: Mapping[str, tf.Variable]) -> tf.Tensor:
    """The value ``prev:name`` reads at step 0 (``initial_output``: 0 / "zeros", "ones", a number, "base:x", "var")."""
    shape = tf.concat([[batch_size], [dim.size for dim in template.dims if not dim.is_batch]], 0)
    dtype = tf.as_dtype(template.dtype)
    if spec is None or spec == "zeros" or spec == 0:
        return tf.zeros(shape, dtype)
    if spec == "ones":
        return tf.ones(shape, dtype)
    if isinstance(spec, (int, float)) and not isinstance(spec, bool):
        return tf.fill(shape, tf.cast(spec, dtype))
    if spec == "var":
        return tf.broadcast_to(tf.cast(variables[name], dtype), shape)
    if isinstance(spec, str) and spec.startswith("base:"):
        return tf.cast(tf.broadcast_to(refs[spec[len("base:"):]].tensor, shape), dtype)
    raise ctx.error(f'sublayer {name!r}: "initial_output": expected 0, "zeros", "ones", a number, "base:LAYER" or '
                    f'"var", got {spec!r}')


class RecLoop:
    """The runtime of a ``LoopPlan``: instantiates the loop network and runs it step by step."""

    def __init__(self, owner: Any, ctx: LayerContext, plan: LoopPlan, *, include_eos: bool):
        self.ctx, self.plan, self.include_eos = ctx, plan, include_eos
        self.loop = plan.loop
        self.loop.instantiate()
        self.initial_vars: dict[str, tf.Variable] = {}
        for name in plan.scope.prev_reads:
            spec = self.loop._pending[name].ctx.common.initial_output
            if spec == "var":
                size = self.loop.templates[name].dim
                self.initial_vars[name] = owner.add_param(f"{name}/initial_output", (size,), init=0.0)

    def params(self) -> dict[str, tf.Variable]:
        """Every variable of the loop network, by name."""
        return self.loop.get_params()

    def loss_entries(self) -> dict[str, LossEntry]:
        return {name: LossEntry(loss, scale, output_key=name) for name, (loss, scale) in self.plan.losses.items()}

    def run(self, sources: Sequence[Data], refs: Mapping[str, Data], *, train: bool,
            input_data: Data | None) -> dict[str, Data]:
        """The stacked outputs of ``plan.stacked`` (time-major, masked beyond each sequence's length)."""
        plan, loop = self.plan, self.loop
        batch_size = self.ctx.batch_size()
        frames: dict[str, tf.TensorArray] = {}
        if input_data is not None:
            x = input_data.copy_as_time_major()
            max_len, seq_lens = tf.shape(x.tensor)[0], x.get_dyn_size(x.time_dim)
            frames["data:source"] = _unstack(x.tensor)
        elif plan.length_key is not None:
            whole = refs[plan.length_key]
            max_len = tf.shape(whole.tensor)[whole.time_dim_axis]
            seq_lens = whole.get_dyn_size(whole.time_dim)
        else:
            max_len, seq_lens = self._max_seq_len(refs, batch_size), None
        base = {ref: refs[outer] for ref, outer in loop.outer_sources.items()}
        for key in plan.scope.data_reads:
            whole = refs[f"data:{key}"]
            if whole.time_dim is None:  # no frames: every step reads the whole value
                base[f"data:{key}"] = whole
            else:
                frames[f"data:{key}"] = _unstack(whole.copy_as_time_major().tensor)
        prevs = {name: _initial_output(self.ctx, name, loop.templates[name],
                                       loop._pending[name].ctx.common.initial_output, batch_size, refs,
                                       self.initial_vars)
                 for name in plan.scope.prev_reads}
        states = loop.initial_states(batch_size)
        known_len = seq_lens is not None
        outs = {name: tf.TensorArray(tf.as_dtype(t.dtype), size=0 if not known_len else max_len,
                                     dynamic_size=not known_len, element_shape=None) for name, t in plan.stacked.items()}
        logit_names = [name for name in plan.stacked if _gives_logits(loop.layers[name])]
        logits = {name: tf.TensorArray(tf.float32, size=0 if not known_len else max_len, dynamic_size=not known_len)
                  for name in logit_names}
        ended = tf.zeros([batch_size], tf.bool)
        end_lens = tf.zeros([batch_size], tf.int32)

        def body(i, prevs, states, outs, logits, ended, end_lens):
            inputs = dict(base)
            for ref, ta in frames.items():
                frame = ta.read(i)
                key = ref[len("data:"):]
                template = plan.scope.input_frame if key == "source" else plan.scope.data_reads[key]
                inputs[ref] = template.with_tensor(frame)
                if key == "source":  # the scope resolves "data" and "data:data" to the source frame too
                    inputs["data"] = inputs["data:data"] = inputs[ref]
            inputs[":i"] = index_data(i)
            for name, value in prevs.items():
                inputs[f"prev:{name}"] = loop.templates[name].copy_template(f"prev:{name}").with_tensor(value)
            values, new_states = loop.run_step(inputs, states, i=i, train=train)
            outs = {name: ta.write(i, values[name].tensor) for name, ta in outs.items()}
            logits = {name: ta.write(i, tf.cast(values[name].logits, tf.float32)) for name, ta in logits.items()}
            new_prevs = {name: values[name].tensor for name in prevs}
            if not known_len and "end" in values:
                end_now = tf.reshape(tf.cast(values["end"].tensor, tf.bool), [batch_size])
                first = tf.logical_and(end_now, tf.logical_not(ended))
                end_lens = tf.where(first, i + (1 if self.include_eos else 0), end_lens)
                ended = tf.logical_or(ended, end_now)
            return i + 1, new_prevs, new_states, outs, logits, ended, end_lens

        def cond(i, prevs, states, outs, logits, ended, end_lens):
            return tf.logical_and(i < max_len, tf.logical_not(tf.reduce_all(ended)))

        loop_vars = (tf.constant(0), prevs, states, outs, logits, ended, end_lens)
        invariants = tf.nest.map_structure(_relaxed, loop_vars)
        i, _, _, outs, logits, ended, end_lens = tf.while_loop(
            cond, body, loop_vars, shape_invariants=invariants, maximum_iterations=max_len)
        if not known_len:
            seq_lens = tf.where(ended, end_lens, tf.fill([batch_size], i))
        result = {}
        for name, template in plan.stacked.items():
            data = template.with_tensor(outs[name].stack(), dyn_sizes={plan.time_dim: seq_lens})
            data = data.replace(tensor=data.masked_tensor())
            if name in logits:
                data = data.replace(logits=logits[name].stack())
            result[name] = data
        return result

    def _max_seq_len(self, refs: Mapping[str, Data], batch_size: Any) -> Any:
        """``max_seq_len``: a number, or an expression over ``max_len_from('base:x')``."""
        spec = self.plan.max_seq_len
        if not isinstance(spec, str):
            return tf.constant(int(spec), tf.int32)

        def max_len_from(ref: str) -> Any:
            data = refs[ref[len("base:"):] if ref.startswith("base:") else ref]
            return tf.reduce_max(data.get_dyn_size(data.time_dim))

        try:
            value = eval(spec, {"__builtins__": {}, "max_len_from": max_len_from, "tf": tf})  # noqa: S307 (config)
        except Exception as exc:
            raise self.ctx.error(f'"max_seq_len" {spec!r}: {type(exc).__name__}: {exc}') from None
        return tf.cast(value, tf.int32)


def _unstack(tensor: Any) -> tf.TensorArray:
    """A time-major tensor as a TensorArray of frames."""
    return tf.TensorArray(tensor.dtype, size=tf.shape(tensor)[0]).unstack(tensor)


def _relaxed(value: Any) -> Any:
    """Shape invariant: the rank only (states may grow, the batch may change)."""
    if isinstance(value, tf.TensorArray):
        return tf.TensorShape(None)
    value = tf.convert_to_tensor(value)
    return tf.TensorShape([None] * value.shape.rank) if value.shape.rank else value.shape


def _gives_logits(layer: Any) -> bool:
    """Whether a layer's output carries ``logits`` (a softmax), stacked for stable losses."""
    return bool(getattr(layer, "is_softmax", False) or getattr(layer, "activation_name", None) == "softmax")


def check_unit_dict(ctx: LayerContext, unit: Any) -> None:
    """A dict of layer dicts."""
    if not all(isinstance(layer, Mapping) for layer in unit.values()):
        bad = next(name for name, layer in unit.items() if not isinstance(layer, Mapping))
        raise LayerConfigError(f'{ctx.where()}: "unit": sublayer {bad!r}: expected a layer dict, got {unit[bad]!r}')
