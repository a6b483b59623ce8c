"""The loop optimizer (``optimize_move_layers_out``): sublayers of a rec unit that need not run step by step
are computed on whole sequences, before the loop (input side) or after it (output side).

A sublayer stays in the loop when it lies on a cycle through ``prev:`` (it reads its own past), when a
sublayer in the loop reads it and it reads one there, or when it cannot run over whole sequences with the
same result (its class is not ``frame_wise``, it reads ``:i``, or it decides the loop length). Everything
else moves out: a frame-wise layer on the stacked sequence gives the frames it would give step by step,
and a recurrent cell (a ``rec`` unit string) whose inputs are all known beforehand runs as one
whole-sequence unit (the native kernel for LSTMs).
"""

from __future__ import annotations

from typing import Any, Callable, Iterable, Mapping

import tensorflow as tf

from returnn.tensor.align import aligned_tensor
from returnn.tensor.data import Data
from returnn.tensor.dim import Dim
from returnn.tf.layers.base import LayerBase, LayerContext, get_layer_class
from returnn.tf.layers.rec.loop_net import SOURCE, UnitScope, frame_template
from returnn.tf.net_graph import DATA, INDEX, LAYER, PREV, NetGraph, Ref


def partition(graph: NetGraph, built: Iterable[str]) -> tuple[list[str], list[str], list[str]]:
    """``(input side, loop, output side)`` of the sublayers ``built`` (each list in ``built``'s order)."""
    built = list(built)
    # a sublayer ("x/last_state") differs per step and over whole sequences: x stays where it is read per step
    forced = {ref.layer for name in built for ref in graph.refs(name)
                            if ref.kind in (LAYER, PREV) and ref.name != ref.layer}
    reach = {name: graph.depends_on(name) & set(built) for name in built}
    varying = _time_varying(graph, built)
    # a layer with a state over a value that is the same at every step (a base: layer) accumulates step by step;
    # prev: of such a value differs at step 0 only: both stay in the loop
    forced |= {name for name in built if _has_state(graph, name) and name not in varying}
    forced |= {name for name in built if any(dep not in varying for dep in graph.prev_deps(name) if dep in reach)}
    core = {name for name in built if name in reach[name] or name in forced or not _movable(graph, name)}
    before = [name for name in built if name not in core and not (reach[name] & core)]
    rest = [name for name in built if name not in core and name not in before]
    needed_in_loop = {name for name in rest if any(name in reach[c] for c in core)}
    loop = [name for name in built if name in core or name in needed_in_loop]
    after = [name for name in rest if name not in needed_in_loop]
    return before, loop, after


def _time_varying(graph: NetGraph, built: list[str]) -> set[str]:
    """Sublayers whose value changes from step to step: they read a frame (``data:``), ``prev:`` or ``:i``, or a
    sublayer that does; the others (reading only ``base:`` layers) are the same at every step."""
    varying: set[str] = set()
    changed = True
    while changed:
        changed = False
        for name in built:
            if name in varying:
                continue
            refs = graph.refs(name)
            if any(ref.kind in (DATA, PREV, INDEX) for ref in refs) or any(dep in varying for dep in
                                                                          graph.same_step_deps(name)):
                varying.add(name)
                changed = True
    return varying


def _has_state(graph: NetGraph, name: str) -> bool:
    """Whether the sublayer's class carries a state from step to step (a cell, causal attention, a running sum)."""
    cls = get_layer_class(graph.net_dict[name]["class"])
    return cls.initial_state is not LayerBase.initial_state


def _movable(graph: NetGraph, name: str) -> bool:
    """Whether a sublayer gives the same frames when run on whole sequences (its class says so for its options;
    no ``:i``)."""
    layer = graph.net_dict[name]
    cls = get_layer_class(layer["class"])
    return (cls.runs_on_sequences(layer) and not cls.searches(layer, search=graph.search)
            and not any(ref.kind == INDEX for ref in graph.refs(name)))


class SeqScope(UnitScope):
    """Scope of a whole-sequence network of moved-out sublayers: ``data:source`` and ``data:KEY`` are whole
    sequences (the loop's time axis, time-major), other sublayers come as given templates (``outside``:
    stacked loop outputs or the input side's outputs), ``prev:x`` is x shifted by one step."""

    def __init__(self, ctx: LayerContext, *, roots: Iterable[str], time_dim: Dim, input_whole: Data | None,
                 outside: Mapping[str, Data]):
        super().__init__(ctx, roots=list(roots), outside=outside)
        self.time_dim, self.input_whole = time_dim, input_whole
        self.initial_frame: Callable[[str, Data], Any] | None = None  # set for each run: (name, frame) -> [B, ...]

    def template(self, net: Any, ref: Ref, *, requested_by: str) -> Data | None:
        if ref.kind == DATA:
            if ref.name in (SOURCE, "data"):
                return self.input_whole.copy_template(ref.text)
            return self.extern_template(ref, lambda whole: on_loop_time(whole, self.time_dim))
        outside = self.outside_template(ref)
        if outside is not None:
            return outside
        if ref.kind == PREV:
            self.prev_reads[ref.name] = None
            template = net.dependency_template(ref.name, requested_by=requested_by)
            if self.time_dim not in template.dims:
                raise self.ctx.error(f"sublayer {requested_by!r} reads {ref.text!r}, which is the same at every step "
                                     f"({template.describe()}); the loop optimizer cannot shift it: set "
                                     f'"optimize_move_layers_out": False')
            return template.copy_template(ref.text)
        return None

    def after_layer(self, name: str, values: Mapping[str, Data]) -> dict[str, Data]:
        """``prev:name`` once ``name`` is computed, for the layers after it."""
        if name not in self.prev_reads:
            return {}
        value = values[name]
        frame = frame_template(value, self.time_dim)
        return {f"prev:{name}": shifted(value, self.time_dim, self.initial_frame(name, frame))}

    def target_template(self, net: Any, target: str) -> Data:
        return self.ctx.network.target_template(target, requested_by=self.ctx.name)


def on_loop_time(data: Data, time_dim: Dim) -> Data:
    """``data`` (an extern key read step by step) with its time dim replaced by the loop's."""
    if data.time_dim is None or data.time_dim is time_dim:
        return data
    old = data.time_dim
    sizes = {(time_dim if dim is old else dim): size for dim, size in data.dyn_sizes.items()}
    return data.replace(dims=tuple(time_dim if dim is old else dim for dim in data.dims), time_dim=time_dim,
                        dyn_sizes=sizes, logits=data.logits)


def shifted(data: Data, time_dim: Dim, initial_frame: Any) -> Data:
    """``prev:x`` on a whole sequence: x one step later in time, ``initial_frame`` [B, ...] at step 0."""
    axis = data.dims.index(time_dim)
    tensor = tf.convert_to_tensor(data.tensor)
    frame_dims = [dim for dim in data.dims if dim is not time_dim]
    first = aligned_tensor(frame_template(data, time_dim).with_tensor(initial_frame), frame_dims)
    head = tf.expand_dims(tf.cast(first, tensor.dtype), axis)
    rest = tf.gather(tensor, tf.range(tf.shape(tensor)[axis] - 1), axis=axis)
    return data.replace(tensor=tf.concat([head, rest], axis=axis), logits=None)
