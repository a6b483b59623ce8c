"""The reduce layer: sum, mean, max, min, logsumexp, prod, argmax, argmin, any, all over named axes."""

from __future__ import annotations

from typing import Any, Callable, Sequence

import numpy as np
import tensorflow as tf

from returnn.tensor.data import Data
from returnn.tensor.dim import SPATIAL, Dim
from returnn.tf.layers.base import LayerBase, LayerContext, LayerOpts, register_layer
from returnn.tf.layers.opts import did_you_mean
from returnn.tf.layers.shape import axes_of

REDUCE_OPS: dict[str, Callable[..., Any]] = {
    "sum": tf.reduce_sum, "mean": tf.reduce_sum, "max": tf.reduce_max, "min": tf.reduce_min,
    "logsumexp": tf.reduce_logsumexp, "prod": tf.reduce_prod, "any": tf.reduce_any, "all": tf.reduce_all,
    "argmax": tf.argmax, "argmin": tf.argmin,
}
_ARG = ("argmax", "argmin")


def _pad_value(mode: str, dtype: tf.DType) -> Any:
    """The value padded frames take so they do not change the result of ``mode``."""
    if mode in ("any", "all"):
        return mode == "all"
    if mode in ("sum", "mean"):
        return 0
    if mode == "prod":
        return 1
    big = np.inf if dtype.is_floating else dtype.max
    return -big if mode in ("max", "logsumexp", "argmax") else big


@register_layer("reduce")
class ReduceLayer(LayerBase):
    """``mode`` over ``axes`` ("T", "F", "B", "spatial", dim tags, lists); padded frames never count.

    Config: ``{"class": "reduce", "from": "enc", "mode": "mean", "axes": "T"}``. Modes: sum, mean, max, min,
    logsumexp, prod, any, all, argmax/argmin (one axis; sparse output over that dim). ``keep_dims`` keeps
    the reduced axes with size 1; ``use_time_mask`` (default True) masks padding of reduced dynamic axes.
    """

    example = {"from": "data", "mode": "max", "axes": "T"}

    class Opts(LayerOpts):
        mode: str
        axes: Any = None
        axis: Any = None
        keep_dims: bool = False
        use_time_mask: bool | None = None

    @classmethod
    def out_template(cls, ctx: LayerContext, opts: Opts) -> Data:
        data = ctx.input_template()
        axes = cls._axes(ctx, data, opts)
        if opts.keep_dims:
            dims = [Dim(1, f"{ctx.name}:reduced{i}", kind=SPATIAL if dim.is_batch else dim.kind) if i in axes else dim
                    for i, dim in enumerate(data.dims)]
        else:
            dims = [dim for i, dim in enumerate(data.dims) if i not in axes]
        if opts.mode in _ARG:
            return data.with_dims(dims, dtype="int32", sparse_dim=data.dims[axes[0]])
        return data.with_dims(dims, **({"dtype": "bool"} if opts.mode in ("any", "all") else {}))

    @staticmethod
    def _axes(ctx: LayerContext, data: Data, opts: Opts) -> list[int]:
        """The axes to reduce from ``axes`` (or ``axis``); checks the mode."""
        if opts.mode not in REDUCE_OPS:
            raise ctx.error(f'"mode": unknown {opts.mode!r}{did_you_mean(opts.mode, REDUCE_OPS)}; '
                            f"known: {', '.join(REDUCE_OPS)}")
        desc = opts.axes if opts.axes is not None else opts.axis
        if desc is None:
            raise ctx.error('needs "axes" (or "axis"), e.g. "T", "F", ["T", "F"]')
        axes = sorted(axes_of(ctx, data, desc, "axes" if opts.axes is not None else "axis"))
        if not axes:
            raise ctx.error(f'"axes": {desc!r} names no axis of {data.describe()}')
        if opts.mode in _ARG and len(axes) != 1:
            raise ctx.error(f'"axes": {opts.mode} needs exactly one axis, got {len(axes)}')
        if data.sparse and opts.mode not in ("max", "min", "any", "all"):
            raise ctx.error(f'"mode": {opts.mode} of sparse (class index) input {data.describe()} makes no sense')
        return axes

    def __init__(self, ctx: LayerContext, opts: Opts):
        super().__init__(ctx)
        data = ctx.input_template()
        self.axes = self._axes(ctx, data, opts)
        self.mode = opts.mode
        self.keep_dims = opts.keep_dims
        self.use_mask = opts.use_time_mask is not False
        self.masked_dims = [data.dims[a] for a in self.axes if data.dims[a].is_dynamic and not data.dims[a].is_batch]

    def __call__(self, sources: Sequence[Data], *, train: bool) -> Data:
        x = self.input_data(sources)
        tensor = x.tensor
        mask = None
        if self.use_mask and self.masked_dims and x.batch_dim_axis is not None:
            mask = tf.reduce_all(tf.stack([tf.broadcast_to(x.mask_broadcast(dim), tf.shape(tensor))
                                           for dim in self.masked_dims]), axis=0)
            tensor = tf.where(mask, tensor, tf.cast(_pad_value(self.mode, tensor.dtype), tensor.dtype))
        if self.mode in _ARG:
            y = tf.cast(REDUCE_OPS[self.mode](tensor, axis=self.axes[0]), tf.int32)
            if self.keep_dims:
                y = tf.expand_dims(y, self.axes[0])
        else:
            y = REDUCE_OPS[self.mode](tensor, axis=self.axes, keepdims=self.keep_dims)
        if self.mode == "mean":
            if mask is None:
                shape = tf.shape(tensor)
                count = tf.cast(tf.reduce_prod(tf.gather(shape, self.axes)), y.dtype)
            else:
                count = tf.reduce_sum(tf.cast(mask, y.dtype), axis=self.axes, keepdims=self.keep_dims)
            y = y / tf.maximum(count, tf.cast(1, y.dtype))
        return self.out.with_tensor(y, like=x)
