"""Layers that make values rather than transform their input: constant, variable, range, range_in_axis, length."""

from __future__ import annotations

import dataclasses
import math
from typing import Any, Mapping, Sequence

import numpy as np
import tensorflow as tf

from returnn.tensor.data import Data
from returnn.tensor.dim import FEATURE, SPATIAL, Dim
from returnn.tf.layers.base import LayerBase, LayerContext, LayerOpts, register_layer
from returnn.tf.layers.shape import axis_of

def static_dims(ctx: LayerContext, shape: Sequence[int], *, last_feature: bool = True) -> list[Dim]:
    """New static dims for ``shape``; the last is the feature dim (as RETURNN's default feature axis)."""
    if not all(isinstance(n, int) and not isinstance(n, bool) and n >= 0 for n in shape):
        raise ctx.error(f'"shape": expected non-negative ints, got {list(shape)!r}')
    kinds = [SPATIAL] * len(shape)
    if shape and last_feature:
        kinds[-1] = FEATURE
    return [Dim(n, f"{ctx.name}:static{i}", kind=kind) for i, (n, kind) in enumerate(zip(shape, kinds))]


def batch_size_of(layer: LayerBase, sources: Sequence[Data]) -> Any:
    """The batch size from the first source, else the network's (from the batch it runs on)."""
    if sources and sources[0].batch_dim_axis is not None:
        return tf.shape(sources[0].tensor)[sources[0].batch_dim_axis]
    return layer.ctx.batch_size()


@register_layer("constant")
class ConstantLayer(LayerBase):
    """A fixed value (scalar or nested list), optionally broadcast to ``shape`` and given a batch axis.

    Config: ``{"class": "constant", "value": 1.0}`` or ``{"class": "constant", "value": [1, 2], "dtype": "int32"}``.
    ``with_batch_dim`` repeats it over the batch (size taken from "from", else from the batch).
    """

    default_from = "none"
    example = {"value": [0.5, -1.0, 2.0]}

    class Opts(LayerOpts):
        value: Any = 0.0
        dtype: str | None = None
        shape: Sequence[int] | None = None
        with_batch_dim: bool = False

    @classmethod
    def out_template(cls, ctx: LayerContext, opts: Opts) -> Data:
        value = cls._array(ctx, opts)
        dims = static_dims(ctx, value.shape)
        if opts.with_batch_dim:
            ctx.needs_batch_size()
            dims.insert(0, ctx.batch_dim)
        return Data(ctx.name, tuple(dims), dtype=str(value.dtype))

    @staticmethod
    def _array(ctx: LayerContext, opts: Opts) -> np.ndarray:
        """The value as an array of the output dtype and shape."""
        try:
            value = np.asarray(opts.value, dtype=opts.dtype)
            if value.dtype == np.float64 and opts.dtype is None:
                value = value.astype(np.float32)
            if value.dtype == np.int64 and opts.dtype is None:
                value = value.astype(np.int32)
            if opts.shape is not None:
                value = np.broadcast_to(value, tuple(opts.shape))
        except (TypeError, ValueError) as exc:
            raise ctx.error(f'"value" {opts.value!r} with "dtype" {opts.dtype!r} / "shape" {opts.shape!r}: {exc}') from None
        if value.dtype.kind not in "biuf":
            raise ctx.error(f'"value": expected numbers or bools, got {opts.value!r}')
        return value

    def __init__(self, ctx: LayerContext, opts: Opts):
        super().__init__(ctx)
        self.value = self._array(ctx, opts)
        self.with_batch = opts.with_batch_dim

    def __call__(self, sources: Sequence[Data], *, train: bool, refs: Mapping[str, Data] | None = None) -> Data:
        tensor = tf.constant(self.value)
        if self.with_batch:
            n = batch_size_of(self, sources)
            tensor = tf.tile(tensor[None], tf.concat([[n], tf.ones([self.value.ndim], tf.int32)], 0))
        return self.out.with_tensor(tensor)


@register_layer("variable")
class VariableLayer(LayerBase):
    """A trainable parameter of ``shape`` as a layer output, named after the layer (``name/name``).

    Config: ``{"class": "variable", "shape": [512], "init": "glorot_uniform"}``. ``add_batch_axis`` repeats
    it over the batch (size from "from", else from the batch); ``add_time_axis`` adds a time axis of size 1.
    Params: ``<layer name>`` of ``shape``.
    """

    default_from = "none"
    example = {"shape": [3], "init": 1.0, "add_batch_axis": True, "add_time_axis": True}

    class Opts(LayerOpts):
        shape: Sequence[int] = dataclasses.field(default=dataclasses.MISSING)
        dtype: str = "float32"
        init: Any = 0.0
        add_batch_axis: bool = False
        add_time_axis: bool = False

    @classmethod
    def out_template(cls, ctx: LayerContext, opts: Opts) -> Data:
        dims = static_dims(ctx, opts.shape)
        if opts.add_time_axis:
            dims.insert(0, Dim(1, f"{ctx.name}:time", kind=SPATIAL))
        if opts.add_batch_axis:
            ctx.needs_batch_size()
            dims.insert(0, ctx.batch_dim)
        return Data(ctx.name, tuple(dims), dtype=opts.dtype)

    def __init__(self, ctx: LayerContext, opts: Opts):
        super().__init__(ctx)
        self.var = self.add_param(ctx.name.split("/")[-1], opts.shape, init=opts.init, dtype=opts.dtype)
        self.opts = opts

    def __call__(self, sources: Sequence[Data], *, train: bool, refs: Mapping[str, Data] | None = None) -> Data:
        tensor = tf.convert_to_tensor(self.var)
        if self.opts.add_time_axis:
            tensor = tensor[None]
        if self.opts.add_batch_axis:
            n = batch_size_of(self, sources)
            tensor = tf.tile(tensor[None], tf.concat([[n], tf.ones([tensor.shape.rank], tf.int32)], 0))
        return self.out.with_tensor(tensor)


@register_layer("range")
class RangeLayer(LayerBase):
    """``start, start + delta, ...`` below ``limit``, a new static axis (the feature axis, as in RETURNN, so
    ``"F"`` names it; with ``sparse`` the values are class indices and the axis is spatial).

    Config: ``{"class": "range", "limit": 10}``; ``sparse`` makes the values class indices below ``limit``.
    """

    default_from = "none"
    example = {"limit": 5, "start": 1, "delta": 2}

    class Opts(LayerOpts):
        limit: int | float
        start: int | float = 0
        delta: int | float = 1
        dtype: str | None = None
        sparse: bool = False

    @classmethod
    def out_template(cls, ctx: LayerContext, opts: Opts) -> Data:
        if opts.delta == 0:
            raise ctx.error('"delta": must not be 0')
        n = max(math.ceil((opts.limit - opts.start) / opts.delta), 0)
        dtype = opts.dtype or ("int32" if all(isinstance(v, int) for v in (opts.limit, opts.start, opts.delta))
                               else "float32")
        # RETURNN's range axis is the feature axis (it has a static dim); sparse values have no feature axis
        dim = Dim(n, f"{ctx.name}:range", kind=SPATIAL if opts.sparse else FEATURE)
        if opts.sparse:
            if not dtype.startswith("int") or opts.start < 0 or opts.delta < 0:
                raise ctx.error('"sparse": needs non-negative int values')
            return Data(ctx.name, (dim,), dtype=dtype, sparse_dim=Dim(int(opts.limit), f"{ctx.name}:sparse-dim",
                                                                      kind=FEATURE))
        return Data(ctx.name, (dim,), dtype=dtype)

    def __init__(self, ctx: LayerContext, opts: Opts):
        super().__init__(ctx)
        self.opts = opts

    def __call__(self, sources: Sequence[Data], *, train: bool) -> Data:
        o = self.opts
        tensor = tf.range(o.start, o.limit, o.delta, dtype=self.out.dtype)
        return self.out.with_tensor(tensor)


@register_layer("range_in_axis")
class RangeInAxisLayer(LayerBase):
    """``0, 1, ...`` along ``axis`` of the input (with its lengths), e.g. the frame index.

    Config: ``{"class": "range_in_axis", "from": "x", "axis": "T"}``; ``keepdims`` gives the input's dims,
    the range broadcast over the other axes; ``sparse`` makes the values class indices over that dim.
    """

    example = {"from": "data", "axis": "T"}

    class Opts(LayerOpts):
        axis: Any
        keepdims: bool = False
        dtype: str = "int32"
        sparse: bool = False

    @classmethod
    def out_template(cls, ctx: LayerContext, opts: Opts) -> Data:
        data = ctx.input_template()
        axis = axis_of(ctx, data, opts.axis, "axis")
        dim = data.dims[axis]
        dims = data.dims if opts.keepdims else (dim,)
        sparse_dim = dim if opts.sparse else None
        return data.copy_template(ctx.name).with_dims(dims, dtype=opts.dtype, sparse_dim=sparse_dim,
                                                      feature_dim=None if opts.sparse else data.feature_dim)

    def __init__(self, ctx: LayerContext, opts: Opts):
        super().__init__(ctx)
        self.axis = ctx.input_template().get_axis(opts.axis)
        self.keepdims = opts.keepdims

    def __call__(self, sources: Sequence[Data], *, train: bool) -> Data:
        x = self.input_data(sources)
        shape = tf.shape(x.tensor)
        tensor = tf.range(shape[self.axis], dtype=self.out.dtype)
        if self.keepdims:
            expand = [1] * x.batch_ndim
            expand[self.axis] = -1
            tensor = tf.broadcast_to(tf.reshape(tensor, expand), shape)
        return self.out.with_tensor(tensor, like=x)


@register_layer("length")
class LengthLayer(LayerBase):
    """The [B] lengths of ``axis`` (default "T"; a static axis gives its size for every sequence).

    Config: ``{"class": "length", "from": "enc", "axis": "T"}``
    """

    example = {"from": "data", "axis": "T"}

    class Opts(LayerOpts):
        axis: Any = "T"
        dtype: str = "int32"

    @classmethod
    def out_template(cls, ctx: LayerContext, opts: Opts) -> Data:
        data = ctx.input_template()
        axis_of(ctx, data, opts.axis, "axis")
        if data.batch_dim_axis is None:
            raise ctx.error(f"input {data.describe()} has no batch axis")
        return Data(ctx.name, (data.dims[data.batch_dim_axis],), dtype=opts.dtype)

    def __init__(self, ctx: LayerContext, opts: Opts):
        super().__init__(ctx)
        self.axis = ctx.input_template().get_axis(opts.axis)

    def __call__(self, sources: Sequence[Data], *, train: bool) -> Data:
        x = self.input_data(sources)
        return self.out.with_tensor(tf.cast(x.get_dyn_size(x.dims[self.axis]), self.out.dtype))
