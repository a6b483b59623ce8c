"""Layers that select frames: slice (start/end/step), slice_nd (per-sequence start), gather (positions)."""

from __future__ import annotations

import dataclasses
from typing import Any, Mapping, Sequence

import tensorflow as tf

from returnn.tensor.align import merged_dyn_sizes
from returnn.tensor.data import Data
from returnn.tensor.dim import SPATIAL, Dim
from returnn.tf.layers.base import LayerBase, LayerContext, LayerOpts, layer_ref, register_layer
from returnn.tf.layers.seq_ops import (batch_axis_layout, ceildiv, gather_frames, gather_static, new_axis_dim,
                                       replace_dim, transpose_to)
from returnn.tf.layers.shape import non_batch_axis_of


def _check_int(ctx: LayerContext, value: Any, option: str, *, positive: bool = False) -> None:
    """``value`` must be None or an int (positive when asked)."""
    if value is not None and (not isinstance(value, int) or isinstance(value, bool) or (positive and value <= 0)):
        raise ctx.error(f'"{option}": expected {"a positive" if positive else "an"} int, got {value!r}')


@register_layer("slice")
class SliceLayer(LayerBase):
    """``x[start:end:step]`` along ``axis``; on a dynamic axis per sequence (negative ends count from its end).

    Config: ``{"class": "slice", "from": "x", "axis": "T", "slice_start": 1, "slice_step": 2}``
    """

    example = {"from": "data", "axis": "T", "slice_start": 1, "slice_step": 2}

    class Opts(LayerOpts):
        axis: Any
        slice_start: int | None = None
        slice_end: int | None = None
        slice_step: int | None = None
        out_dim: Dim | None = None

    @classmethod
    def out_template(cls, ctx: LayerContext, opts: Opts) -> Data:
        data = ctx.input_template()
        axis = non_batch_axis_of(ctx, data, opts.axis, "axis")
        for name in ("slice_start", "slice_end"):
            _check_int(ctx, getattr(opts, name), name)
        _check_int(ctx, opts.slice_step, "slice_step")
        old = data.dims[axis]
        if opts.slice_step == 0 or (old.is_dynamic and (opts.slice_step or 1) < 0):
            raise ctx.error(f'"slice_step": expected a non-zero int (positive on dynamic {old.describe()}), '
                            f"got {opts.slice_step}")
        size = None if old.is_dynamic else len(cls._static_positions(old.size, opts))
        new = opts.out_dim or new_axis_dim(old, size, f"{ctx.name}:slice")
        if new.size != size:
            raise ctx.error(f'"out_dim" {new.describe()} does not match the slice size {size}')
        if old.is_dynamic and data.batch_dim_axis is None:
            raise ctx.error(f"slicing dynamic {old.describe()} needs a batch axis")
        return replace_dim(data, axis, new)

    @staticmethod
    def _static_positions(size: int, opts: Opts) -> list[int]:
        """The kept indices of a static axis."""
        return list(range(size))[opts.slice_start:opts.slice_end:opts.slice_step]

    def __init__(self, ctx: LayerContext, opts: Opts):
        super().__init__(ctx)
        data = ctx.input_template()
        self.axis = data.get_axis(opts.axis)
        self.opts = opts
        old = data.dims[self.axis]
        self.positions = None if old.is_dynamic else self._static_positions(old.size, opts)

    def __call__(self, sources: Sequence[Data], *, train: bool) -> Data:
        x = self.input_data(sources)
        if self.positions is not None:
            return self.out.with_tensor(gather_static(x.tensor, self.axis, self.positions), like=x)
        lens = x.get_dyn_size(x.dims[self.axis])
        start, end, step = self.opts.slice_start or 0, self.opts.slice_end, self.opts.slice_step or 1
        start_b = tf.fill(tf.shape(lens), start) if start >= 0 else tf.maximum(lens + start, 0)
        end_b = lens if end is None else (tf.minimum(lens, end) if end >= 0 else tf.maximum(lens + end, 0))
        new_lens = tf.maximum(ceildiv(end_b - start_b, step), 0)
        steps = tf.range(tf.reduce_max(new_lens))[None, :]
        positions = tf.where(steps < new_lens[:, None], start_b[:, None] + steps * step, -1)
        tensor, rest = batch_axis_layout(x, self.axis)
        y = gather_frames(tensor, lens, positions)
        new = self.out.dims[self.axis]
        y = transpose_to(y, [x.dims[x.batch_dim_axis], new, *rest], self.out.dims)
        return self.out.with_tensor(y, like=x, dyn_sizes={new: new_lens})


@register_layer("slice_nd")
class SliceNdLayer(LayerBase):
    """Per sequence ``x[start:start + size]`` along ``axis`` (default "T"); ``start`` is a layer of int positions.

    Config: ``{"class": "slice_nd", "from": "enc", "start": "pos", "size": 5}``. ``start`` [B] gives [B, size, ...];
    ``start`` [B, T'] gives [B, T', size, ...]. Frames past the sequence end are 0. Without ``size`` (``start``
    [B] only) the slice runs to each sequence's end.
    """

    example = {"from": "data", "start": "start", "size": 2}
    example_extra = {"start": {"class": "length", "from": "data", "axis": "T"}}

    class Opts(LayerOpts):
        start: str = layer_ref(dataclasses.MISSING)
        size: int | Dim | None = None
        axis: Any = "T"
        out_spatial_dim: Dim | None = None

    @classmethod
    def out_template(cls, ctx: LayerContext, opts: Opts) -> Data:
        data, start = ctx.input_template(), ctx.ref_templates[opts.start]
        axis = non_batch_axis_of(ctx, data, opts.axis, "axis")
        if start.batch_dim_axis is None or data.batch_dim_axis is None or not start.dtype.startswith("int"):
            raise ctx.error(f'"start": expected int positions with a batch axis, got {start.describe()} '
                            f"({start.dtype}) for input {data.describe()}")
        size = opts.size.size if isinstance(opts.size, Dim) else opts.size
        _check_int(ctx, size, "size", positive=True)
        if size is None and start.batch_ndim != 1:
            raise ctx.error(f'"size": needed when "start" has more axes than the batch ({start.describe()})')
        new = opts.size if isinstance(opts.size, Dim) else (
            opts.out_spatial_dim or Dim(size, f"{ctx.name}:slice", kind=SPATIAL))
        rest = [dim for i, dim in enumerate(data.dims) if i not in (axis, data.batch_dim_axis)]
        extra = [dim for i, dim in enumerate(start.dims) if i != start.batch_dim_axis]
        if any(dim in rest for dim in extra):
            raise ctx.error(f'"start": {start.describe()} shares a dim with the input besides the sliced axis')
        dims = [data.dims[data.batch_dim_axis], *extra, new, *rest]
        return data.with_dims(dims, time_dim=new if data.time_dim is data.dims[axis] else data.time_dim)

    def __init__(self, ctx: LayerContext, opts: Opts):
        super().__init__(ctx)
        self.axis = ctx.input_template().get_axis(opts.axis)
        self.start_ref = opts.start
        self.new = self.out.dims[ctx.ref_templates[opts.start].batch_ndim]

    def __call__(self, sources: Sequence[Data], *, train: bool, refs: Mapping[str, Data]) -> Data:
        x, start = self.input_data(sources), refs[self.start_ref].copy_as_batch_major()
        lens = x.get_dyn_size(x.dims[self.axis])
        starts = tf.cast(start.tensor, tf.int32)
        sizes = merged_dyn_sizes([x, start])
        if self.new.is_dynamic:
            new_lens = tf.maximum(lens - starts, 0)
            steps = tf.range(tf.reduce_max(new_lens))
            sizes[self.new] = new_lens
        else:
            steps = tf.range(self.new.size)
        positions = starts[..., None] + steps
        if self.new.is_dynamic:
            positions = tf.where(steps[None, :] < sizes[self.new][:, None], positions, -1)
        tensor, _ = batch_axis_layout(x, self.axis)
        return self.out.with_tensor(gather_frames(tensor, lens, positions), dyn_sizes=sizes)


@register_layer("gather")
class GatherLayer(LayerBase):
    """Entries along ``axis`` at ``position``: an int, or a layer of int positions whose dims replace the axis.

    Config: ``{"class": "gather", "from": "enc", "position": "idx", "axis": "T"}``. Dims the position layer
    shares with the input (the batch) are gathered per entry. An int on a dynamic axis counts per sequence
    (negative: from its end). Positions are clipped to the axis.
    """

    example = {"from": "data", "position": 0, "axis": "T"}

    class Opts(LayerOpts):
        position: str | int = layer_ref(dataclasses.MISSING)
        axis: Any = dataclasses.field(default=dataclasses.MISSING)

    @classmethod
    def out_template(cls, ctx: LayerContext, opts: Opts) -> Data:
        data = ctx.input_template()
        axis = non_batch_axis_of(ctx, data, opts.axis, "axis")
        old = data.dims[axis]
        if isinstance(opts.position, int):
            if old.size is not None and not -old.size <= opts.position < old.size:
                raise ctx.error(f'"position": {opts.position} out of range for {old.describe()}')
            return data.with_dims([dim for i, dim in enumerate(data.dims) if i != axis])
        pos = ctx.ref_templates[opts.position]
        if not pos.dtype.startswith("int"):
            raise ctx.error(f'"position": expected int positions, got {pos.describe()} ({pos.dtype})')
        common, extra = cls._split_position_dims(data, axis, pos)
        dims = list(data.dims[:axis]) + extra + list(data.dims[axis + 1:])
        return data.with_dims(dims, time_dim=data.time_dim if data.time_dim is not old else None)

    @staticmethod
    def _split_position_dims(data: Data, axis: int, pos: Data) -> tuple[list[Dim], list[Dim]]:
        """Position dims shared with the input (besides ``axis``) and the new ones."""
        others = [dim for i, dim in enumerate(data.dims) if i != axis]
        common = [dim for dim in pos.dims if any(dim is other for other in others)]
        return common, [dim for dim in pos.dims if dim not in common]

    def __init__(self, ctx: LayerContext, opts: Opts):
        super().__init__(ctx)
        data = ctx.input_template()
        self.axis = data.get_axis(opts.axis)
        self.position = opts.position
        self.dynamic = data.dims[self.axis].is_dynamic

    def __call__(self, sources: Sequence[Data], *, train: bool, refs: Mapping[str, Data] | None = None) -> Data:
        x = self.input_data(sources)
        if isinstance(self.position, int):
            return self._gather_int(x)
        pos = refs[self.position]
        common, extra = self._split_position_dims(x, self.axis, pos)
        rest = [dim for i, dim in enumerate(x.dims) if i != self.axis and dim not in common]
        tensor = transpose_to(x.tensor, x.dims, [*common, x.dims[self.axis], *rest])
        idx = transpose_to(tf.cast(pos.tensor, tf.int32), pos.dims, [*common, *extra])
        idx = tf.clip_by_value(idx, 0, tf.maximum(tf.shape(x.tensor)[self.axis] - 1, 0))
        y = tf.gather(tensor, idx, axis=len(common), batch_dims=len(common))
        y = transpose_to(y, [*common, *extra, *rest], self.out.dims)
        return self.out.with_tensor(y, dyn_sizes=merged_dyn_sizes([x, pos]))

    def _gather_int(self, x: Data) -> Data:
        """An int position: plain on a static axis, per sequence on a dynamic one."""
        if not self.dynamic:
            return self.out.with_tensor(tf.gather(x.tensor, self.position, axis=self.axis), like=x)
        lens = x.get_dyn_size(x.dims[self.axis])
        positions = lens + self.position if self.position < 0 else tf.fill(tf.shape(lens), self.position)
        tensor, rest = batch_axis_layout(x, self.axis)
        y = gather_frames(tensor, lens, positions)
        y = transpose_to(y, [x.dims[x.batch_dim_axis], *rest], self.out.dims)
        return self.out.with_tensor(y, like=x)
