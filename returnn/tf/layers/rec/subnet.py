"""The ``rec`` layer with a ``unit`` dict: a subnetwork evaluated once per time step in one ``tf.while_loop``.

Templates: the unit's layers run step by step get frame templates (no time axis, ``LoopScope``), those the
loop optimizer moves out whole-sequence ones (``SeqScope``); the rec layer's output is the ``output`` sublayer
stacked over time (time-major). The loop runs over the input's time
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
from returnn.log import logger
from returnn.tensor.dim import BeamBatchDim, Dim, spatial_dim
from returnn.tensor.align import aligned_tensor
from returnn.tf.layers.base import LayerContext, get_layer_class
from returnn.tf.layers.rec.beam import backtrack_rows, gather_rows, source_rows
from returnn.tf.layers.rec.loop_net import (LoopScope, beamed, frame_template, index_data, loop_invariant,
                                            stacked_template)
from returnn.tf.layers.rec.optimize import SeqScope, on_loop_time, partition, shifted
from returnn.tf.layers.rec.read_once import params_read_once
from returnn.tf.losses import LossEntry, make_loss
from returnn.tf.net_graph import NetGraph, is_root

_MAX_LEN_FROM = re.compile(r"max_len_from\(\s*['\"]([^'\"]+)['\"]\s*\)")


@dataclasses.dataclass
class LoopPlan:
    """What the template pass decided: the networks (before the loop, in it, after it), where the loop length
    comes from, and the stacked templates of the sublayers others read (output, losses, is_output_layer)."""

    time_dim: Dim
    input_whole: Data | None  # the rec layer's input, time-major
    length_key: str | None  # "data:KEY" whose time axis gives the loop length
    max_seq_len: Any  # int, expression string or None
    loop: Any  # the Network run per step (None when every sublayer moved out)
    scope: LoopScope | None
    before: Any  # the Network of the input side (None: nothing moved there)
    after: Any  # the Network of the output side
    stacked: dict[str, Data]  # sublayer -> stacked template (time-major)
    losses: dict[str, Any]  # sublayer -> (Loss, scale)
    initial_output: dict[str, Any]  # sublayer -> its initial_output option

    def networks(self) -> list[Any]:
        return [net for net in (self.before, self.loop, self.after) if net is not None]

    def stacked_template(self, ctx: LayerContext, name: str) -> Data | None:
        """The stacked template of sublayer ``name`` (which the run then gives, as ``"rec/name"``); None when the
        unit has no such built sublayer."""
        if name not in self.stacked:
            net = self.where(name)
            if net is None:
                return None
            template = net.templates[name]
            self.stacked[name] = (stacked_template(template, self.time_dim, name=f"{ctx.name}/{name}")
                                  if net is self.loop else _as_stacked(ctx, template, self.time_dim))
        return self.stacked[name]

    def where(self, name: str) -> Any:
        """The network computing sublayer ``name`` (None: no network builds it)."""
        return next((net for net in self.networks() if name in net.templates), None)


def plan_loop(ctx: LayerContext, unit: Mapping[str, Any], *, size_target: str | None, max_seq_len: Any,
              optimize: bool) -> LoopPlan:
    """Templates of the unit's layers and the loop's length source; errors name the rec layer and sublayer."""
    if "output" not in unit:
        raise ctx.error(f'"unit": the subnetwork needs an "output" layer; it has: {", ".join(unit) or "none"}')
    search = bool(ctx.option("search", False))  # the network is built for beam search
    beam = _search_beam(ctx, unit, search=search)
    if beam is not None and max_seq_len is None and not ctx.sources:
        max_seq_len = _default_max_seq_len(ctx)
    input_whole, length_key, time_dim = None, None, None
    if ctx.sources:
        src = ctx.input_template()
        if src.time_dim is None or src.batch_dim_axis is None:
            raise ctx.error(f"needs input with a batch and a time axis, got {src.describe()}")
        input_whole = src.copy_as_time_major()
        time_dim = src.time_dim
    else:
        target = size_target or (ctx.common.target if beam is None else None)  # a search finds its own length
        if target is not None:
            whole = ctx.network.data_template(target, requested_by=ctx.name)
            ctx.dependency(f"data:{target}")
            if whole.time_dim is None:
                raise ctx.error(f'"target" {target!r}: has no time axis to take the loop length from')
            time_dim, length_key = whole.time_dim, f"data:{target}"
        elif max_seq_len is not None:  # without "end": every sequence runs max_seq_len steps
            time_dim = spatial_dim(None, f"{ctx.name}:time")
        elif "end" in unit:
            raise ctx.error('has an "end" layer but no "max_seq_len"; give "max_seq_len" (a number or an '
                            "expression like \"max_len_from('base:encoder') * 3\")")
        else:
            raise ctx.error('cannot know the loop length: no "from" with a time axis, no "target" / "size_target", '
                            'no "max_seq_len" with an "end" layer')
    if isinstance(max_seq_len, str):
        for ref in _MAX_LEN_FROM.findall(max_seq_len):
            ctx.dependency(ref[len("base:"):] if ref.startswith("base:") else ref)
    initial_output = {name: layer.get("initial_output") for name, layer in unit.items()}
    ctx.needs_batch_size()  # initial outputs and states
    known = input_whole is not None or length_key is not None
    roots = [name for name, layer in unit.items() if is_root(name, layer, search=search)] + (
        [] if known or "end" not in unit else ["end"])
    graph = NetGraph(unit, path_of=lambda name: f"{ctx.path}/{name}", search=search)
    if optimize and known:
        order = graph.order(roots)
        before, inloop, after = partition(graph, order)
        if beam is not None:  # the output side would read the beam: it stays in the loop
            inloop, after = [name for name in order if name in inloop or name in after], []
    else:
        before, inloop, after = [], None, []
    plan = LoopPlan(time_dim, input_whole, length_key, max_seq_len, initial_output=initial_output,
                    **_build_networks(ctx, unit, roots, time_dim, input_whole, before, inloop, after, beam,
                                      search=search))
    for name, spec in initial_output.items():
        if spec is not None:
            _check_initial_output(ctx, name, spec)
    return plan


def _search_beam(ctx: LayerContext, unit: Mapping[str, Any], *, search: bool) -> BeamBatchDim | None:
    """The batch dim of the loop when a choice in ``unit`` searches (None: none does); one choice at most."""
    searching = [name for name, layer in unit.items()
                 if layer.get("class") == "choice" and get_layer_class("choice").searches(layer, search=search)]
    if not searching:
        return None
    if len(searching) > 1:
        raise ctx.error(f"sublayers {', '.join(map(repr, searching))}: more than one choice searches in one unit; "
                        "only one is supported (give the others \"search\": False)")
    name = searching[0]
    beam_size = unit[name].get("beam_size")
    if not isinstance(beam_size, int) or isinstance(beam_size, bool) or beam_size < 1:
        raise ctx.error(f'sublayer {name!r}: "beam_size": expected an int >= 1, got {beam_size!r}')
    return BeamBatchDim(ctx.batch_dim, beam_size, name)


def _default_max_seq_len(ctx: LayerContext) -> str:
    """A search without ``max_seq_len`` and without input stops at the longest input's length times 3 plus 10,
    or when every hypothesis ended (logged once, when the network is built)."""
    root = ctx.network
    while root.parent_ctx is not None:
        root = root.parent_ctx.network
    if "data" not in root.extern_data or root.extern_data["data"].time_dim is None:
        raise ctx.error('searches without "max_seq_len" and there is no extern "data" with a time axis to derive '
                        "one from; give \"max_seq_len\" (e.g. \"max_len_from('base:encoder') * 2\")")
    spec = "max_len_from('data:data') * 3 + 10"
    logger.info(f"layer {ctx.path!r}: no \"max_seq_len\"; the search stops at {spec} steps (or when every "
                "hypothesis ended)")
    return spec


def _build_networks(ctx: LayerContext, unit: Mapping[str, Any], roots: list[str], time_dim: Dim,
                    input_whole: Data | None, before: list[str], inloop: list[str] | None,
                    after: list[str], beam: BeamBatchDim | None, *, search: bool) -> dict[str, Any]:
    """The networks of the plan, their stacked templates and losses (``inloop`` None: all of ``roots`` and what
    they read run in the loop; a search network keeps no sublayer stacked for a loss, and has no losses)."""
    pre = post = loop = scope = None
    templates: dict[str, Data] = {}
    if before:
        pre_scope = SeqScope(ctx, roots=before, time_dim=time_dim, input_whole=input_whole, outside={})
        pre = ctx.make_subnetwork({n: unit[n] for n in before}, extern_data={}, loop=pre_scope)
        templates.update((n, _as_stacked(ctx, pre.templates[n], time_dim)) for n in before)
    if inloop is None or inloop:
        outside = {n: frame_template(pre.templates[n], time_dim) for n in before}
        scope = LoopScope(ctx, roots=inloop if inloop is not None else roots,
                          input_frame=None if input_whole is None else frame_template(input_whole),
                          outside=outside, beam=beam)
        loop = ctx.make_subnetwork({n: layer for n, layer in unit.items() if inloop is None or n in inloop},
                                   extern_data={}, loop=scope)
        templates.update((n, stacked_template(t, time_dim, name=f"{ctx.name}/{n}")) for n, t in loop.templates.items())
        if beam is not None and beam.choice not in loop.templates:
            raise ctx.error(f"the searching choice {beam.choice!r} is not built: no output, end or is_output_layer "
                            "reads it")
    if after:
        outside = {n: pre.templates[n] if n in before else templates[n] for n in templates}
        post_scope = SeqScope(ctx, roots=after, time_dim=time_dim, input_whole=input_whole, outside=outside)
        post = ctx.make_subnetwork({n: unit[n] for n in after}, extern_data={}, loop=post_scope)
        templates.update((n, _as_stacked(ctx, post.templates[n], time_dim)) for n in after)
    stacked = {name: templates[name] for name, layer in unit.items()
               if name in templates and (is_root(name, layer, search=search) or name == "end")}
    if loop is not None and "end" in loop.templates:
        end = loop.templates["end"]
        if end.dtype != "bool" or any(not dim.is_batch for dim in end.dims):
            raise ctx.error(f'sublayer "end": expected a bool per sequence ([B] or a scalar), got {end.describe()} '
                            f"{end.dtype}")
    losses = {}
    for net in (pre, loop, post):
        for name, pending in ({} if net is None else net._pending).items():
            common = pending.ctx.common
            if common.loss and not search:
                target = common.target or "classes"
                whole_target = ctx.network.target_template(target, requested_by=ctx.name)
                loss = make_loss(common.loss, common.loss_opts or {}, output=stacked[name], target=whole_target,
                                 target_name=target, where=pending.ctx.where())
                losses[name] = (loss, common.loss_scale)
    return {"loop": loop, "scope": scope, "before": pre, "after": post, "stacked": stacked, "losses": losses}


def _as_stacked(ctx: LayerContext, seq: Data, time_dim: Dim) -> Data:
    """The stacked (time-major) template of a sublayer computed on whole sequences (one without the loop's time
    axis, e.g. a linear map of a ``base:`` encoder, is the same at every step)."""
    return stacked_template(frame_template(seq, time_dim), time_dim, name=f"{ctx.name}/{seq.name}")


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
    shape = tf.concat([[batch_size], tf.constant([dim.size for dim in template.dims if not dim.is_batch], tf.int32)], 0)
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
    raise AssertionError(f"initial_output {spec!r} of {name!r} was not checked")


class RecLoop:
    """The runtime of a ``LoopPlan``: instantiates its networks and runs them (the loop one step at a time)."""

    def __init__(self, owner: Any, ctx: LayerContext, plan: LoopPlan, *, include_eos: bool):
        self.ctx, self.plan, self.include_eos = ctx, plan, include_eos
        for net in plan.networks():
            net.instantiate()
        self.beam = plan.scope.beam if plan.scope is not None else None
        self.after_choice: set[str] = set()  # loop layers run after the searching choice (its beam order)
        if self.beam is not None:
            self.after_choice = _after_choice(plan.loop, plan.scope, self.beam.choice)
        self.initial_vars: dict[str, tf.Variable] = {}
        for name, spec in plan.initial_output.items():
            if spec == "var" and plan.where(name) is not None:
                size = plan.where(name).templates[name].dim
                self.initial_vars[name] = owner.add_param(f"{name}/initial_output", (size,), init=0.0)

    def params(self) -> dict[str, tf.Variable]:
        """Every variable of the loop's networks, by name."""
        params: dict[str, tf.Variable] = {}
        for net in self.plan.networks():
            params.update(net.get_params())
        return params

    def loss_entries(self) -> dict[str, LossEntry]:
        return {name: LossEntry(loss, scale, output_key=name) for name, (loss, scale) in self.plan.losses.items()}

    def _initial(self, name: str, frame: Data, refs: Mapping[str, Data]) -> Any:
        return _initial_output(self.ctx, name, frame, self.plan.initial_output.get(name), self.ctx.batch_size(),
                               refs, self.initial_vars)

    def run(self, sources: Sequence[Data], refs: Mapping[str, Data], *, train: bool,
            input_data: Data | None) -> dict[str, Data]:
        """The stacked outputs of ``plan.stacked`` (time-major, masked beyond each sequence's length)."""
        plan = self.plan
        whole: dict[str, Data] = {}
        if input_data is not None:
            x = input_data.copy_as_time_major()
            whole["data:source"] = whole["data"] = whole["data:data"] = x
            max_len, seq_lens = tf.shape(x.tensor)[0], x.get_dyn_size(x.time_dim)
        elif plan.length_key is not None:
            target = refs[plan.length_key]
            max_len, seq_lens = tf.shape(target.tensor)[target.time_dim_axis], target.get_dyn_size(target.time_dim)
        else:
            max_len, seq_lens = self._max_seq_len(refs), None
        whole.update((ref, on_loop_time(value, plan.time_dim)) for ref, value in refs.items() if ref.startswith("data:"))
        values: dict[str, Data] = {}
        beam_scores = None  # a search's scores of the hypotheses at the end
        for net in plan.networks():
            if isinstance(net.scope, SeqScope):  # its prev: shifts need this run's initial outputs
                net.scope.initial_frame = lambda name, frame: self._initial(name, frame, refs)
            batch = {ref: refs[outer] for ref, outer in net.outer_sources.items()}
            batch.update((ref, value) for ref, value in whole.items() if ref in net.outer_refs)
            if net is plan.loop:
                if self.beam is not None and seq_lens is not None:  # each hypothesis has its sequence's length
                    seq_lens = tf.repeat(seq_lens, self.beam.beam_size, axis=0)
                values.update(self._run_loop(batch, values, refs, max_len, seq_lens, train=train))
                if seq_lens is None:
                    seq_lens = values.pop(":seq_lens")
                beam_scores = values.pop(":beam_scores", None)
                continue
            batch.update(self._outside_values(net.scope, values, refs, max_len))
            outputs = net(batch, train=train)
            values.update((name, outputs[name]) for name in net.templates)
        result = {}
        for name, template in plan.stacked.items():
            tensor = aligned_tensor(_over_time(values[name], plan.time_dim, max_len), template.dims)
            data = template.with_tensor(tensor, dyn_sizes={plan.time_dim: seq_lens})
            result[name] = data.replace(tensor=data.masked_tensor(), logits=_aligned_logits(values[name], template),
                                        beam_scores=beam_scores)
        return result

    def _outside_values(self, scope: Any, values: Mapping[str, Data], refs: Mapping[str, Data],
                        max_len: Any) -> dict[str, Data]:
        """``x`` and ``prev:x`` of sublayers computed in an earlier network, as whole sequences."""
        result = {}
        for ref in scope.outside_reads:
            name = ref[len("prev:"):] if ref.startswith("prev:") else ref
            value = values[name]
            if ref.startswith("prev:"):
                value = shifted(_over_time(value, self.plan.time_dim, max_len), self.plan.time_dim,
                                self._initial(name, frame_template(value, self.plan.time_dim), refs))
            result[ref] = value
        return result

    def _run_loop(self, batch: Mapping[str, Data], before: Mapping[str, Data], refs: Mapping[str, Data],
                  max_len: Any, seq_lens: Any, *, train: bool) -> dict[str, Data]:
        """The loop network step by step in one tf.while_loop: its sublayers stacked over time."""
        plan, loop, scope, beam = self.plan, self.plan.loop, self.plan.scope, self.beam
        batch_size = self.ctx.batch_size()
        time_dim = plan.time_dim
        frames: dict[str, tuple[tf.TensorArray, Data]] = {}
        fixed: dict[str, Data] = {}
        per_step = dict(batch)
        per_step.update(self._outside_values(scope, before, refs, max_len))
        prevs = {name: self._initial(name, loop.templates[name], refs) for name in scope.prev_reads}
        if beam is not None:  # every hypothesis of a sequence starts from the sequence's values
            per_step = {ref: _tiled(value, beam) for ref, value in per_step.items()}
            prevs = {name: tf.repeat(value, beam.beam_size, axis=0) for name, value in prevs.items()}
            batch_size = batch_size * beam.beam_size
        for ref, value in per_step.items():
            # a base: layer is read whole at every step, even when it has the loop's time axis
            if time_dim in value.dims and not ref.startswith("base:"):
                frames[ref] = (_unstack(value.copy_move_axis(value.dims.index(time_dim), 0).tensor),
                               frame_template(value, time_dim).copy_template(ref))
            else:
                fixed[ref] = loop_invariant(value)
        if "data:source" in frames:  # the source frame under its other names is set from it in the body
            frames.pop("data", None)
            frames.pop("data:data", None)
        states = loop.initial_states(batch_size)
        known_len = seq_lens is not None
        stacked_names = self._stacked_from_loop()
        outs = {name: tf.TensorArray(tf.as_dtype(loop.templates[name].dtype), size=max_len if known_len else 0,
                                     dynamic_size=not known_len) for name in stacked_names}
        logit_names = [name for name in stacked_names if _gives_logits(loop.layers[name])]
        logits = {name: tf.TensorArray(tf.float32, size=max_len if known_len else 0, dynamic_size=not known_len)
                  for name in logit_names}
        ended = tf.zeros([batch_size], tf.bool)
        end_lens = tf.zeros([batch_size], tf.int32)
        if beam is not None:  # the choice's src_beams of each step, to backtrack the hypotheses after the loop
            outs[":src_beams"] = tf.TensorArray(tf.int32, size=max_len if known_len else 0, dynamic_size=not known_len)

        def body(i, prevs, states, outs, logits, ended, end_lens):
            inputs = dict(fixed)
            for ref, (ta, template) in frames.items():
                inputs[ref] = template.with_tensor(ta.read(i))
            if "data:source" in inputs:
                inputs["data"] = inputs["data:data"] = inputs["data:source"]
            inputs[":i"] = index_data(i)
            if beam is not None and known_len:  # a hypothesis ends with its sequence (its score stays)
                choice = states[beam.choice]
                states = {**states, beam.choice: choice._replace(ended=choice.ended | (i >= seq_lens))}
            for name, value in prevs.items():
                inputs[f"prev:{name}"] = loop.templates[name].copy_template(f"prev:{name}").with_tensor(value)
            values, new_states = loop.run_step(inputs, states, i=i, train=train)
            if beam is not None:
                values[":src_beams"] = values[f"{beam.choice}/src_beams"]
            outs = {name: ta.write(i, values[name].tensor) for name, ta in outs.items()}
            logits = {name: ta.write(i, tf.cast(values[name].logits, tf.float32)) for name, ta in logits.items()}
            new_prevs = {name: values[name].tensor for name in prevs}
            if beam is not None:  # what was computed before the choice follows the hypotheses it kept
                rows = source_rows(values[":src_beams"].tensor, beam.beam_size)
                new_prevs = {name: value if name in self.after_choice else tf.gather(value, rows)
                             for name, value in new_prevs.items()}
                new_states = {name: state if name in self.after_choice else
                              tf.nest.map_structure(lambda t: tf.gather(t, rows), state)
                              for name, state in new_states.items()}
                ended, end_lens = tf.gather(ended, rows), tf.gather(end_lens, rows)
            if "end" in values and not known_len:
                end_now = tf.broadcast_to(values["end"].tensor, [batch_size])  # [B], or a scalar for all
                first = tf.logical_and(end_now, tf.logical_not(ended))
                end_lens = tf.where(first, i + (1 if self.include_eos else 0), end_lens)
                ended = tf.logical_or(ended, end_now)
            if beam is not None:
                new_states[beam.choice] = new_states[beam.choice]._replace(ended=ended)
            return i + 1, new_prevs, new_states, outs, logits, ended, end_lens

        def cond(i, prevs, states, outs, logits, ended, end_lens):
            return tf.logical_and(i < max_len, tf.logical_not(tf.reduce_all(ended)))

        loop_vars = (tf.constant(0), prevs, states, outs, logits, ended, end_lens)
        invariants = tf.nest.map_structure(_relaxed, loop_vars)
        with params_read_once(loop), loop.running_with_batch_size(batch_size if beam is not None else None):
            i, _, states, outs, logits, ended, end_lens = tf.while_loop(
                cond, body, loop_vars, shape_invariants=invariants, maximum_iterations=max_len)
        result: dict[str, Data] = {}
        if not known_len:
            seq_lens = tf.where(ended, end_lens, tf.fill([batch_size], i))
            result[":seq_lens"] = seq_lens
        stacked = {name: ta.stack() for name, ta in outs.items()}
        stacked_logits = {name: ta.stack() for name, ta in logits.items()}
        if beam is not None:  # each hypothesis' frames, from the first step to the last
            after, before_choice = backtrack_rows(stacked.pop(":src_beams"), beam.beam_size)
            for group in (stacked, stacked_logits):
                group.update((name, gather_rows(value, after if name in self.after_choice else before_choice))
                             for name, value in group.items())
        for name in stacked_names:
            template = stacked_template(loop.templates[name], time_dim, name=name)
            data = template.with_tensor(stacked[name], dyn_sizes={time_dim: seq_lens})
            result[name] = data.replace(logits=stacked_logits.get(name))
        if beam is not None:
            result[":beam_scores"] = states[beam.choice].ranking
        return result

    def _stacked_from_loop(self) -> list[str]:
        """Sublayers of the loop whose frames are kept: those the rec layer gives and those the output side reads."""
        plan = self.plan
        read_after = {ref[len("prev:"):] if ref.startswith("prev:") else ref
                      for ref in (plan.after.scope.outside_reads if plan.after is not None else ())}
        return [name for name in plan.loop.templates if name in plan.stacked or name in read_after]

    def _max_seq_len(self, refs: Mapping[str, Data]) -> Any:
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


def _after_choice(loop: Any, scope: Any, choice: str) -> set[str]:
    """The loop layers run after the searching ``choice`` (it included); sets ``scope.regather`` to the values
    before it (earlier layers, ``prev:``) those read, which the step reorders to the kept hypotheses."""
    names = list(loop.layers)
    after = set(names[names.index(choice):])
    earlier = set(names) - after
    reads = {ref for name in after - {choice}
             for ref in list(loop._sources[name]) + list(loop._contexts[name].ref_templates)}
    scope.regather = sorted(ref for ref in reads if ref.startswith("prev:") or ref.split("/", 1)[0] in earlier)
    return after


def _tiled(value: Data, beam: BeamBatchDim) -> Data:
    """A value of the batch outside as the beam sees it: each sequence's entries ``beam_size`` times."""
    axis = value.batch_dim_axis
    if axis is None:
        return value
    k = beam.beam_size
    sizes = {dim: tf.repeat(size, k, axis=0) for dim, size in value.dyn_sizes.items()}
    tiled = beamed(value, beam).replace(tensor=tf.repeat(value.tensor, k, axis=axis), dyn_sizes=sizes)
    return tiled.replace(logits=None if value.logits is None else tf.repeat(value.logits, k, axis=axis))


def _over_time(value: Data, time_dim: Dim, max_len: Any) -> Data:
    """``value`` with the loop's time axis in front: as it is, or repeated when it is the same at every step."""
    if time_dim in value.dims:
        return value
    tensor = tf.broadcast_to(value.tensor[None], tf.concat([[max_len], tf.shape(value.tensor)], 0))
    return value.replace(dims=(time_dim,) + value.dims, time_dim=time_dim, tensor=tensor, logits=None)


def _aligned_logits(value: Data, template: Data) -> Any:
    """The logits of a softmax sublayer in the stacked layout (None when it has none)."""
    if value.logits is None:
        return None
    return aligned_tensor(value.replace(tensor=value.logits), template.dims)


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
