"""The scope of the network inside a rec layer's loop: its layers see one frame (no time axis).

What a layer there reads besides its siblings comes with each step's inputs: ``data:source`` (or
``data``, the rec layer's input frame), ``data:KEY`` (a frame of an extern key, e.g. the target in
training), ``prev:x`` (x at the previous step), ``:i`` (the step index) and ``base:x`` (a layer outside,
whole sequence). ``LoopScope`` tells the network the templates of these (``Network(scope=...)``).
"""

from __future__ import annotations

from typing import Any, Callable, Mapping, Sequence

import tensorflow as tf

from returnn.errors import LayerConfigError
from returnn.tensor.data import Data
from returnn.tensor.dim import BeamBatchDim, Dim
from returnn.tf.layers.base import LayerContext
from returnn.tf.layers.rec.beam import source_rows
from returnn.tf.net_graph import DATA, INDEX, LAYER, PREV, Ref

SOURCE = "source"


def beamed(data: Data, beam: BeamBatchDim | None) -> Data:
    """``data`` with its batch dim replaced by ``beam`` (the batch of a searching loop); as it is without one."""
    if beam is None or data.batch_dim_axis is None or data.dims[data.batch_dim_axis] is beam:
        return data
    return data.replace(dims=tuple(beam if dim.is_batch else dim for dim in data.dims),
                        dyn_sizes={dim: size for dim, size in data.dyn_sizes.items() if not dim.is_batch})


def frame_template(data: Data, time_dim: Dim | None = None) -> Data:
    """``data`` without its time axis (``time_dim``, default its own): one frame."""
    time_dim = time_dim or data.time_dim
    if time_dim is None or time_dim not in data.dims:
        return data.copy_template()
    return data.copy_template().with_dims([dim for dim in data.dims if dim is not time_dim], time_dim=None)


def stacked_template(frame: Data, time_dim: Dim, *, name: str | None = None) -> Data:
    """A frame template with ``time_dim`` in front: the per-step values stacked over time (time-major)."""
    return frame.copy_template(name).with_dims((time_dim,) + frame.dims, time_dim=time_dim)


def index_template() -> Data:
    """``:i``, the step index: a scalar int32."""
    return Data(":i", (), dtype="int32", time_dim=None, feature_dim=None)


def index_data(i: Any) -> Data:
    """``:i`` with its value."""
    return index_template().with_tensor(tf.convert_to_tensor(i, tf.int32))


class UnitScope:
    """What the networks of a rec unit share in resolving refs: extern keys (``data:KEY``, read through the rec
    layer), sublayers computed by another of them (``outside``: ``x`` and ``prev:x``), and what was read."""

    inside_loop = False

    def __init__(self, ctx: LayerContext, *, roots: Sequence[str], outside: Mapping[str, Data] | None = None):
        self.ctx = ctx
        self.roots = list(roots)
        self.outside = dict(outside or {})  # sublayers computed by another network of the unit -> their templates
        self.prev_reads: dict[str, None] = {}  # own sublayers read through prev:
        self.outside_reads: dict[str, None] = {}  # "x" / "prev:x" of the outside sublayers
        self.data_reads: dict[str, Data] = {}  # extern keys read -> their templates here

    def extern_template(self, ref: Ref, convert: Callable[[Data], Data]) -> Data:
        """``data:KEY`` (a dependency of the rec layer) as ``convert`` makes it for this network."""
        whole = self.ctx.network.data_template(ref.name, requested_by=self.ctx.name)
        self.ctx.dependency(ref.text)
        self.data_reads[ref.name] = convert(whole)
        return self.data_reads[ref.name]

    def outside_template(self, ref: Ref) -> Data | None:
        """``x`` / ``prev:x`` of a sublayer another network of the unit computes; None for other refs."""
        if ref.kind in (LAYER, PREV) and ref.layer in self.outside and ref.name == ref.layer:
            self.outside_reads[ref.text] = None
            return self.outside[ref.name].copy_template(ref.text)
        return None


class LoopScope(UnitScope):
    """How the loop network of rec layer ``ctx`` resolves refs; records what each step must be given.

    ``input_frame`` is one frame of the rec layer's input (None without input); ``roots`` the sublayers
    to build (output, losses, is_output_layer, end); ``outside`` the frame templates of sublayers computed
    before the loop.
    """

    inside_loop = True

    def __init__(self, ctx: LayerContext, *, roots: Sequence[str], input_frame: Data | None,
                 outside: Mapping[str, Data] | None = None, beam: BeamBatchDim | None = None):
        super().__init__(ctx, roots=roots, outside={name: beamed(t, beam) for name, t in (outside or {}).items()})
        self.input_frame = None if input_frame is None else beamed(input_frame, beam)
        self.beam = beam  # the loop's batch when a choice in it searches
        self.regather: list[str] = []  # set by the loop: values the layers after the choice read

    @property
    def batch_dim(self) -> BeamBatchDim | None:
        """The loop network's own batch dim (None: its parent's): the beam's, when a choice searches."""
        return self.beam

    def into_scope(self, outer: Data) -> Data:
        """A template from outside the loop as the steps see it: batch-major (``loop_invariant`` makes the values
        so once, before the loop), in a beam each sequence beam-size times."""
        return beamed(outer.copy_as_batch_major(), self.beam)


    def template(self, net: Any, ref: Ref, *, requested_by: str) -> Data | None:
        """Template of ``data:``, ``prev:``, ``:i`` and outside refs; None for others (layers, ``base:``)."""
        if ref.kind == DATA:
            if ref.name in (SOURCE, "data"):
                if self.input_frame is None:
                    raise LayerConfigError(f"layer {net.path_of(requested_by)!r}: {ref.text!r}: the rec layer has "
                                           'no input ("from": [])')
                return self.input_frame.copy_template(ref.text)
            return self.extern_template(ref, lambda whole: beamed(frame_template(whole), self.beam))
        if ref.kind == INDEX:
            return index_template()
        outside = self.outside_template(ref)
        if outside is not None:
            return outside
        if ref.kind == PREV:
            self.prev_reads[ref.name] = None
            return net.prev_template(ref.name, requested_by=requested_by)
        return None

    def after_layer(self, name: str, values: Mapping[str, Data]) -> dict[str, Data]:
        """Values derived from a layer's output within a step: after a searching choice, the values the later
        layers read, reordered to the hypotheses it kept (``prev:`` comes with the next step)."""
        if self.beam is None or name != self.beam.choice:
            return {}
        rows = source_rows(values[f"{name}/src_beams"].tensor, self.beam.beam_size)
        return {key: values[key].replace(tensor=tf.gather(values[key].tensor, rows), logits=None)
                for key in self.regather if key in values}

    def target_template(self, net: Any, target: str) -> Data:
        """A loss target inside the loop: one frame (the loss itself runs on the stacked output)."""
        return frame_template(self.ctx.network.target_template(target, requested_by=self.ctx.name))


def loop_invariant(value: Data) -> Data:
    """A value that is the same at every step (a ``base:`` layer) as the steps read it: batch-major, its padding
    zeroed, both done once before the loop instead of by the layers at every step."""
    value = value.copy_as_batch_major()
    if value.tensor is None or value.batch_dim_axis is None or not value.dynamic_dims():
        return value
    return value.replace(tensor=value.masked_tensor(), logits=value.logits, padding_zeroed=True)
