"""Layers that reshape or reorder axes: merge_dims, split_dims, expand_dims, squeeze, swap_axes, transpose, split."""

from __future__ import annotations

import math
from typing import Any, Mapping, Sequence

import tensorflow as tf

from returnn.errors import LayerConfigError
from returnn.tensor.data import Data
from returnn.tensor.dim import FEATURE, SPATIAL, Dim
from returnn.tf.layers.base import LayerBase, LayerContext, LayerOpts, register_layer
from returnn.tf.layers.seq_ops import ceildiv


def axes_of(ctx: LayerContext, data: Data, desc: Any, option: str) -> list[int]:
    """Axes ``desc`` names in ``data``; a bad name is an error naming this layer and the option."""
    try:
        return data.get_axes(desc)
    except LayerConfigError as exc:
        raise ctx.error(f'"{option}": {exc}') from None


def axis_of(ctx: LayerContext, data: Data, desc: Any, option: str) -> int:
    """The one axis ``desc`` names in ``data``; errors name this layer and the option."""
    try:
        return data.get_axis(desc)
    except LayerConfigError as exc:
        raise ctx.error(f'"{option}": {exc}') from None


def non_batch_axis_of(ctx: LayerContext, data: Data, desc: Any, option: str) -> int:
    """The one axis ``desc`` names in ``data``, which must not be the batch axis."""
    axis = axis_of(ctx, data, desc, option)
    no_batch_axis(ctx, data, [axis], option)
    return axis


def no_batch_axis(ctx: LayerContext, data: Data, axes: Sequence[int], option: str) -> None:
    """Error when ``axes`` include the batch axis."""
    if data.batch_dim_axis is not None and data.batch_dim_axis in axes:
        raise ctx.error(f'"{option}": cannot use the batch axis here ({data.describe()})')


@register_layer("merge_dims")
class MergeDimsLayer(LayerBase):
    """Several axes flattened into one, placed where the first of them was.

    Config: ``{"class": "merge_dims", "from": "conv", "axes": ["S:1", "F"]}``. A dynamic axis (time) may be
    merged when it is the major one: the lengths scale by the product of the other sizes.
    """

    example = {"from": "data", "axes": ["T", "F"]}

    class Opts(LayerOpts):
        axes: Any
        keep_order: bool = True
        out_dim: Dim | None = None

    @classmethod
    def out_template(cls, ctx: LayerContext, opts: Opts) -> Data:
        data = ctx.input_template()
        axes = cls._merge_axes(ctx, data, opts)
        if len(axes) < 2:
            return data
        merged = [data.dims[a] for a in axes]
        if any(dim.is_dynamic for dim in merged[1:]):
            raise ctx.error(f'"axes": a dynamic dim can only be merged as the major (first) one, got '
                            f"{', '.join(d.describe() for d in merged)}")
        size = None if merged[0].is_dynamic else math.prod(dim.size for dim in merged)
        kind = SPATIAL if size is None else (FEATURE if data.feature_dim in merged else SPATIAL)
        new = opts.out_dim or Dim(size, f"{ctx.name}:merged", kind=kind)
        if new.size != size:
            raise ctx.error(f'"out_dim" {new.describe()} does not match the merged size {size}')
        dims = [dim for i, dim in enumerate(data.dims) if i not in axes]
        dims.insert(min(axes), new)
        changes = {"time_dim": new} if data.time_dim in merged else {}
        if kind == FEATURE:
            changes["feature_dim"] = new
        return data.with_dims(dims, **changes)

    @staticmethod
    def _merge_axes(ctx: LayerContext, data: Data, opts: Opts) -> list[int]:
        """The axes to merge, in merge order (axis order with ``keep_order``)."""
        axes = axes_of(ctx, data, opts.axes, "axes")
        no_batch_axis(ctx, data, axes, "axes")
        return sorted(axes) if opts.keep_order else axes

    def __init__(self, ctx: LayerContext, opts: Opts):
        super().__init__(ctx)
        data = ctx.input_template()
        self.axes = self._merge_axes(ctx, data, opts)
        self.pos = min(self.axes) if self.axes else 0

    def __call__(self, sources: Sequence[Data], *, train: bool) -> Data:
        x = self.input_data(sources)
        if len(self.axes) < 2:
            return self.out.with_tensor(x.tensor, like=x)
        rest = [i for i in range(x.batch_ndim) if i not in self.axes]
        perm = rest[:self.pos] + self.axes + rest[self.pos:]
        tensor = tf.transpose(x.tensor, perm)
        shape = tf.shape(tensor)
        end = self.pos + len(self.axes)
        new_shape = tf.concat([shape[:self.pos], [tf.reduce_prod(shape[self.pos:end])], shape[end:]], 0)
        tensor = tf.reshape(tensor, new_shape)
        new_dim = self.out.dims[self.pos]
        sizes = {}
        first = x.dims[self.axes[0]]
        if first.is_dynamic:
            factor = math.prod(x.dims[a].size for a in self.axes[1:])
            sizes[new_dim] = x.get_dyn_size(first) * factor
        return self.out.with_tensor(tensor, like=x, dyn_sizes=sizes)


@register_layer("split_dims")
class SplitDimsLayer(LayerBase):
    """One axis split into several (``dims``; one entry may be -1, inferred).

    Config: ``{"class": "split_dims", "from": "x", "axis": "F", "dims": [4, -1]}``. Splitting the feature axis
    makes the last new dim the feature dim. A dynamic axis splits as ``(-1, n, ...)``: it is zero-padded to a
    multiple of n and the lengths round up (``"pad_to_multiples": False``: they round down).
    """

    example = {"from": "data", "axis": "T", "dims": [-1, 2]}

    class Opts(LayerOpts):
        axis: Any
        dims: Sequence[Any]
        pad_to_multiples: bool | None = None

    @classmethod
    def out_template(cls, ctx: LayerContext, opts: Opts) -> Data:
        data = ctx.input_template()
        axis = non_batch_axis_of(ctx, data, opts.axis, "axis")
        old = data.dims[axis]
        sizes = cls._sizes(ctx, old, opts.dims)
        new_dims = []
        for i, (entry, size) in enumerate(zip(opts.dims, sizes)):
            if isinstance(entry, Dim):
                new_dims.append(entry)
                continue
            kind = FEATURE if old is data.feature_dim and i == len(sizes) - 1 else SPATIAL
            new_dims.append(Dim(size, f"{ctx.name}:split{i}", kind=kind))
        dims = list(data.dims[:axis]) + new_dims + list(data.dims[axis + 1:])
        changes: dict[str, Any] = {}
        if old is data.feature_dim:
            changes["feature_dim"] = new_dims[-1]
        if old is data.time_dim:
            changes["time_dim"] = new_dims[0]
        return data.with_dims(dims, **changes)

    @staticmethod
    def _sizes(ctx: LayerContext, old: Dim, entries: Sequence[Any]) -> list[int | None]:
        """Sizes of the new dims: -1 resolved for a static axis, None (dynamic) for a dynamic one."""
        sizes = [entry.size if isinstance(entry, Dim) else entry for entry in entries]
        if not sizes or not all(s is None or (isinstance(s, int) and (s > 0 or s == -1)) for s in sizes):
            raise ctx.error(f'"dims": expected positive ints (one may be -1), got {list(entries)!r}')
        unknown = [i for i, s in enumerate(sizes) if s in (-1, None)]
        known = math.prod(s for s in sizes if s not in (-1, None))
        if len(unknown) > 1:
            raise ctx.error(f'"dims": at most one -1 (unknown) entry, got {list(entries)!r}')
        if old.is_dynamic:
            if unknown != [0]:
                raise ctx.error(f'"dims": splitting dynamic {old.describe()} needs -1 first, e.g. [-1, 2], '
                                f"got {list(entries)!r}")
            sizes[0] = None
            return sizes
        if unknown:
            if old.size % known:
                raise ctx.error(f'"dims": {list(entries)!r} does not divide {old.describe()}')
            sizes[unknown[0]] = old.size // known
        elif known != old.size:
            raise ctx.error(f'"dims": {list(entries)!r} multiply to {known}, but {old.describe()} has {old.size}')
        return sizes

    def __init__(self, ctx: LayerContext, opts: Opts):
        super().__init__(ctx)
        data = ctx.input_template()
        self.axis = data.get_axis(opts.axis)
        self.n_new = len(opts.dims)
        self.dynamic = data.dims[self.axis].is_dynamic
        self.factor = math.prod(dim.size for dim in self.out.dims[self.axis + 1:self.axis + self.n_new])
        self.round_up = opts.pad_to_multiples is not False

    def __call__(self, sources: Sequence[Data], *, train: bool) -> Data:
        x = self.input_data(sources)
        tensor, shape = x.tensor, tf.shape(x.tensor)
        sizes = {}
        if self.dynamic:
            length = shape[self.axis]
            pad = (-length) % self.factor
            paddings = tf.scatter_nd([[self.axis, 1]], [pad], [x.batch_ndim, 2])
            tensor = tf.pad(x.masked_tensor(), paddings)
            lens = x.get_dyn_size(x.dims[self.axis])
            sizes[self.out.dims[self.axis]] = ceildiv(lens, self.factor) if self.round_up else lens // self.factor
            shape = tf.shape(tensor)
        inner = [dim.size for dim in self.out.dims[self.axis:self.axis + self.n_new]]
        inner = [-1 if size is None else size for size in inner]
        new_shape = tf.concat([shape[:self.axis], inner, shape[self.axis + 1:]], 0)
        return self.out.with_tensor(tf.reshape(tensor, new_shape), like=x, dyn_sizes=sizes)


@register_layer("expand_dims")
class ExpandDimsLayer(LayerBase):
    """A new axis of size ``dim`` (the input repeated along it).

    Config: ``{"class": "expand_dims", "from": "x", "axis": "spatial"}``. ``"F"`` appends a new feature axis;
    ``"T"`` / ``"spatial"`` inserts a spatial axis before the feature axis; an int inserts at that position.
    """

    example = {"from": "data", "axis": "spatial"}

    class Opts(LayerOpts):
        axis: str | int
        dim: int = 1

    @classmethod
    def out_template(cls, ctx: LayerContext, opts: Opts) -> Data:
        data = ctx.input_template()
        if opts.dim < 1:
            raise ctx.error(f'"dim": expected a positive int, got {opts.dim}')
        pos, kind = cls._position(ctx, data, opts.axis)
        new = Dim(opts.dim, f"{ctx.name}:expanded", kind=kind)
        dims = list(data.dims)
        dims.insert(pos, new)
        return data.with_dims(dims, **({"feature_dim": new} if kind == FEATURE and not data.sparse else {}))

    @staticmethod
    def _position(ctx: LayerContext, data: Data, axis: str | int) -> tuple[int, str]:
        """Where the new axis goes and its kind."""
        if isinstance(axis, int):
            if not -data.batch_ndim - 1 <= axis <= data.batch_ndim:
                raise ctx.error(f'"axis": {axis} out of range for {data.describe()}')
            return axis % (data.batch_ndim + 1), SPATIAL
        name = axis.lower()
        if name in ("f", "feature"):
            return data.batch_ndim, FEATURE
        if name in ("t", "time", "spatial"):
            feature = data.feature_dim_axis
            return (data.batch_ndim if feature is None else feature), SPATIAL
        raise ctx.error(f'"axis": expected "F", "T", "spatial" or an int, got {axis!r}')

    def __init__(self, ctx: LayerContext, opts: Opts):
        super().__init__(ctx)
        self.pos, _ = self._position(ctx, ctx.input_template(), opts.axis)
        self.dim = opts.dim

    def __call__(self, sources: Sequence[Data], *, train: bool) -> Data:
        x = self.input_data(sources)
        tensor = tf.expand_dims(x.tensor, self.pos)
        if self.dim > 1:
            multiples = [1] * self.out.batch_ndim
            multiples[self.pos] = self.dim
            tensor = tf.tile(tensor, multiples)
        return self.out.with_tensor(tensor, like=x)


@register_layer("squeeze")
class SqueezeLayer(LayerBase):
    """Axes of static size 1 removed.

    Config: ``{"class": "squeeze", "from": "x", "axis": "F"}``; ``allow_no_op`` accepts named axes that are not 1.
    """

    example = {"from": "data", "axis": "F", "allow_no_op": True}

    class Opts(LayerOpts):
        axis: Any
        allow_no_op: bool = False

    @classmethod
    def out_template(cls, ctx: LayerContext, opts: Opts) -> Data:
        data = ctx.input_template()
        axes = cls._axes(ctx, data, opts)
        return data.with_dims([dim for i, dim in enumerate(data.dims) if i not in axes])

    @staticmethod
    def _axes(ctx: LayerContext, data: Data, opts: Opts) -> list[int]:
        """The named axes of size 1 (others are an error unless ``allow_no_op``)."""
        axes = axes_of(ctx, data, opts.axis, "axis")
        ones = [a for a in axes if data.dims[a].size == 1 and not data.dims[a].is_batch]
        if len(ones) != len(axes) and not opts.allow_no_op:
            bad = [data.dims[a].describe() for a in axes if a not in ones]
            raise ctx.error(f'"axis": can only squeeze static size-1 axes, got {", ".join(bad)} in {data.describe()}')
        return ones

    def __init__(self, ctx: LayerContext, opts: Opts):
        super().__init__(ctx)
        self.axes = self._axes(ctx, ctx.input_template(), opts)

    def __call__(self, sources: Sequence[Data], *, train: bool) -> Data:
        x = self.input_data(sources)
        tensor = tf.squeeze(x.tensor, self.axes) if self.axes else x.tensor
        return self.out.with_tensor(tensor, like=x)


class _PermuteLayer(LayerBase):
    """Base of swap_axes / transpose: the subclass's ``_perm(ctx, data, opts)`` gives the new order of axes."""

    @classmethod
    def out_template(cls, ctx: LayerContext, opts: Any) -> Data:
        data = ctx.input_template()
        return data.with_dims([data.dims[i] for i in cls._perm(ctx, data, opts)])

    def __init__(self, ctx: LayerContext, opts: Any):
        super().__init__(ctx)
        self.perm = self._perm(ctx, ctx.input_template(), opts)

    def __call__(self, sources: Sequence[Data], *, train: bool) -> Data:
        x = self.input_data(sources)
        return self.out.with_tensor(tf.transpose(x.tensor, self.perm), like=x)


@register_layer("swap_axes")
class SwapAxesLayer(_PermuteLayer):
    """Two axes exchanged (the data moves; time/feature roles stay with their dims).

    Config: ``{"class": "swap_axes", "from": "x", "axis1": "T", "axis2": "F"}``
    """

    example = {"from": "data", "axis1": "T", "axis2": "F"}

    class Opts(LayerOpts):
        axis1: Any
        axis2: Any

    @classmethod
    def _perm(cls, ctx: LayerContext, data: Data, opts: Opts) -> list[int]:
        a, b = axis_of(ctx, data, opts.axis1, "axis1"), axis_of(ctx, data, opts.axis2, "axis2")
        perm = list(range(data.batch_ndim))
        perm[a], perm[b] = b, a
        return perm


@register_layer("transpose")
class TransposeLayer(_PermuteLayer):
    """Axes reordered by ``perm``: ``{source axis: target axis}``, e.g. ``{"T": "F", "F": "T"}``.

    Config: ``{"class": "transpose", "from": "x", "perm": {"T": "F", "F": "T"}}``; the axes named must
    form a permutation among themselves.
    """

    example = {"from": "data", "perm": {"T": "F", "F": "T"}}

    class Opts(LayerOpts):
        perm: dict

    @classmethod
    def _perm(cls, ctx: LayerContext, data: Data, opts: Opts) -> list[int]:
        perm = list(range(data.batch_ndim))
        pairs = [(axis_of(ctx, data, src, "perm"), axis_of(ctx, data, dst, "perm")) for src, dst in opts.perm.items()]
        for src, dst in pairs:
            perm[dst] = src
        if sorted(perm) != list(range(data.batch_ndim)):
            raise ctx.error(f'"perm": {opts.perm!r} is not a permutation of the axes of {data.describe()}')
        return perm


@register_layer("split")
class SplitLayer(LayerBase):
    """One axis cut into parts (``size_splits`` or ``num_splits``); the output is the input, parts are sublayers.

    Config: ``{"class": "split", "from": "x", "axis": "F", "size_splits": [2, 3]}``; the parts are the
    sublayers ``"name/0"``, ``"name/1"``, ... (``sub_layer_template`` / ``sub_layer_output``; ``parts(output)``).
    """

    example = {"from": "data", "axis": "F", "num_splits": 1}

    class Opts(LayerOpts):
        axis: Any = "F"
        num_splits: int | None = None
        size_splits: Sequence[int] | None = None
        out_dims: Sequence[Dim] | None = None

    @classmethod
    def out_template(cls, ctx: LayerContext, opts: Opts) -> Data:
        data = ctx.input_template()
        ctx.state["split_parts"] = cls._part_templates(ctx, data, opts)
        return data

    @staticmethod
    def _part_templates(ctx: LayerContext, data: Data, opts: Opts) -> list[Data]:
        """Template of each part: the split axis replaced by a dim of the part's size."""
        axis = axis_of(ctx, data, opts.axis, "axis")
        dim = data.dims[axis]
        if dim.is_dynamic:
            raise ctx.error(f'"axis": cannot split dynamic {dim.describe()}; use "slice_nd" or "split_dims"')
        sizes = SplitLayer._split_sizes(ctx, dim, opts)
        dims = list(opts.out_dims) if opts.out_dims else [Dim(size, f"{ctx.name}/{i}:split", kind=dim.kind)
                                                          for i, size in enumerate(sizes)]
        if [d.size for d in dims] != sizes:
            raise ctx.error(f'"out_dims": sizes {[d.size for d in dims]} do not match the splits {sizes}')
        parts = []
        for i, new in enumerate(dims):
            part_dims = [new if j == axis else old for j, old in enumerate(data.dims)]
            changes = {"feature_dim": new} if dim is data.feature_dim else {}
            parts.append(data.copy_template(f"{ctx.name}/{i}").with_dims(part_dims, **changes))
        return parts

    @staticmethod
    def _split_sizes(ctx: LayerContext, dim: Dim, opts: Opts) -> list[int]:
        """The part sizes from ``size_splits`` / ``num_splits`` / ``out_dims``."""
        if opts.size_splits is not None:
            sizes = list(opts.size_splits)
        elif opts.num_splits is not None:
            if opts.num_splits < 1 or dim.size % opts.num_splits:
                raise ctx.error(f'"num_splits": {opts.num_splits} does not divide {dim.describe()}')
            sizes = [dim.size // opts.num_splits] * opts.num_splits
        elif opts.out_dims:
            sizes = [d.size for d in opts.out_dims]
        else:
            raise ctx.error('needs "size_splits", "num_splits" or "out_dims"')
        if sum(sizes) != dim.size or min(sizes) < 0:
            raise ctx.error(f'"size_splits": {sizes} do not add up to {dim.describe()}')
        return sizes

    def __init__(self, ctx: LayerContext, opts: Opts):
        super().__init__(ctx)
        self.part_templates: list[Data] = list(ctx.state["split_parts"])
        self.axis = ctx.input_template().get_axis(opts.axis)
        self.sizes = [part.dims[self.axis].size for part in self.part_templates]

    def parts(self, out: Data) -> list[Data]:
        """The parts of this layer's output (as computed by ``__call__``)."""
        return [self.sub_layer_output(out, str(i)) for i in range(len(self.part_templates))]

    def _sub_index(self, sub: str) -> int:
        """Index of the part named ``sub`` ("0", "1", ...)."""
        if not sub.isdigit() or int(sub) >= len(self.part_templates):
            raise self.ctx.error(f"no sublayer {sub!r}; the parts are " +
                                 ", ".join(f"'{self.layer_name}/{i}'" for i in range(len(self.part_templates))))
        return int(sub)

    def sub_layer_template(self, sub: str) -> Data:
        """Template of the sublayer ``"<name>/<sub>"`` (the part with that index)."""
        return self.part_templates[self._sub_index(sub)]

    @classmethod
    def sub_template(cls, ctx: LayerContext, sub: str) -> Data | None:
        parts = ctx.state["split_parts"]
        if not sub.isdigit() or int(sub) >= len(parts):
            raise ctx.error(f"no sublayer {sub!r}; the parts are " +
                            ", ".join(f"'{ctx.name}/{i}'" for i in range(len(parts))))
        return parts[int(sub)]

    def sub_layer_output(self, out: Data, sub: str) -> Data:
        """Output of the sublayer ``"<name>/<sub>"`` from this layer's output."""
        index = self._sub_index(sub)
        begin = sum(self.sizes[:index])
        tensor = tf.gather(out.tensor, tf.range(begin, begin + self.sizes[index]), axis=self.axis)
        return self.part_templates[index].with_tensor(tensor, like=out)

    def __call__(self, sources: Sequence[Data], *, train: bool) -> Data:
        x = self.input_data(sources)
        return self.out.with_tensor(x.tensor, like=x)

    def call_with_subs(self, sources: Sequence[Data], *, train: bool,
                       refs: Mapping[str, Data] | None = None) -> tuple[Data, dict[str, Data]]:
        out = self(sources, train=train)
        return out, {str(i): part for i, part in enumerate(self.parts(out))}
