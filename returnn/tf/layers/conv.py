"""Convolution and pooling over the spatial axes (time included): conv (1D/2D/3D) and pool (max/avg).

"same" padding is explicit and centered (left ``(k_eff - 1) // 2``), so a sequence's valid output frames
never depend on how long the other sequences of the batch are; padded input frames count as zeros (conv),
never win a max and never enter an average (pool). Output lengths follow padding, strides and dilation.
"""

from __future__ import annotations

from typing import Any, Sequence

import tensorflow as tf

from returnn.tensor.data import Data
from returnn.tensor.dim import FEATURE, SPATIAL, Dim
from returnn.tf.layers.base import LayerBase, LayerContext, LayerOpts, register_layer
from returnn.tf.layers.seq_ops import ceildiv, transpose_to


def _per_axis(ctx: LayerContext, value: int | Sequence[int] | None, n: int, option: str, default: int = 1) -> list[int]:
    """An int or one int per spatial axis, as a list of ``n`` positive ints."""
    values = [default] * n if value is None else ([value] * n if isinstance(value, int) else list(value))
    if len(values) != n or not all(isinstance(v, int) and v > 0 for v in values):
        raise ctx.error(f'"{option}": expected a positive int or {n} of them (one per spatial axis), got {value!r}')
    return values


def out_length(length: Any, kernel: int, stride: int, dilation: int, padding: str) -> Any:
    """Output frames for ``length`` input frames (an int or a tensor of lengths)."""
    if padding == "valid":
        length = length - (kernel - 1) * dilation
        length = max(length, 0) if isinstance(length, int) else tf.maximum(length, 0)
    return ceildiv(length, stride)


class SpatialWindows:
    """Filter/pool geometry over the spatial axes: sizes, strides, dilations, padding and the output dims."""

    def __init__(self, ctx: LayerContext, data: Data, sizes: Sequence[int], strides: Any, dilation: Any,
                 padding: str, *, size_option: str):
        self.spatial = [d for d in data.dims if not d.is_batch and d is not data.feature_dim]
        n = len(self.spatial)
        if not isinstance(sizes, (list, tuple)) or len(sizes) != n:
            raise ctx.error(f'"{size_option}": expected {n} sizes (one per spatial axis of {data.describe()}), '
                            f"got {sizes!r}")
        self.sizes = _per_axis(ctx, list(sizes), n, size_option)
        self.strides = _per_axis(ctx, strides, n, "strides")
        self.dilation = _per_axis(ctx, dilation, n, "dilation_rate")
        self.padding = padding.lower()
        if self.padding not in ("same", "valid"):
            raise ctx.error(f'"padding": expected "same" or "valid", got {padding!r}')
        if max(self.strides) > 1 and max(self.dilation) > 1:
            raise ctx.error('"strides" > 1 together with "dilation_rate" > 1 is not supported')
        self.out_dims = [self._out_dim(ctx, i, dim) for i, dim in enumerate(self.spatial)]

    def _out_dim(self, ctx: LayerContext, i: int, dim: Dim) -> Dim:
        """The output dim of spatial axis ``i``: the input dim when the size cannot change."""
        if self.padding == "same" and self.strides[i] == 1:
            return dim
        size = None if dim.is_dynamic else out_length(dim.size, self.sizes[i], self.strides[i], self.dilation[i],
                                                      self.padding)
        return Dim(size, f"{ctx.name}:spatial{i}", kind=SPATIAL)

    def pad_same(self, x: Any, value: float = 0.0) -> Any:
        """``x`` [B, spatial..., F] padded explicitly for centered "same" windows."""
        if self.padding != "same":
            return x
        pads = [[0, 0]]
        for size, dil in zip(self.sizes, self.dilation):
            total = (size - 1) * dil
            pads.append([total // 2, total - total // 2])
        return tf.pad(x, pads + [[0, 0]], constant_values=value)

    def out_sizes(self, x: Data) -> dict[Dim, Any]:
        """Lengths of the new dynamic output dims from the input's lengths."""
        sizes = {}
        for i, (dim, new) in enumerate(zip(self.spatial, self.out_dims)):
            if new.is_dynamic and new is not dim:
                sizes[new] = out_length(x.get_dyn_size(dim), self.sizes[i], self.strides[i], self.dilation[i],
                                        self.padding)
        return sizes


def _layout(data: Data, spatial: Sequence[Dim]) -> list[Dim]:
    """[B, spatial..., F] order of ``data``'s dims."""
    return [data.dims[data.batch_dim_axis], *spatial, data.feature_dim]


def _input_prep(ctx: LayerContext, data: Data, opts: Any) -> Data:
    """The input template after ``input_split_feature_dim`` / ``input_add_feature_dim`` / ``input_expand_dims``."""
    if data.sparse or data.feature_dim is None or data.feature_dim.size is None or data.batch_dim_axis is None:
        raise ctx.error(f"needs dense input with a batch axis and a static feature dim, got {data.describe()}")
    dims = [d for d in data.dims if d is not data.feature_dim]
    feature = data.feature_dim
    if opts.input_split_feature_dim:
        n = opts.input_split_feature_dim
        if feature.size % n:
            raise ctx.error(f'"input_split_feature_dim": {n} does not divide {feature.describe()}')
        dims.append(Dim(feature.size // n, f"{ctx.name}:input-split", kind=SPATIAL))
        feature = Dim(n, f"{ctx.name}:input-feature", kind=FEATURE)
    elif opts.input_add_feature_dim:
        dims.append(Dim(feature.size, f"{ctx.name}:input-spatial", kind=SPATIAL))
        feature = Dim(1, f"{ctx.name}:input-feature", kind=FEATURE)
    for i in range(opts.input_expand_dims):
        dims.append(Dim(1, f"{ctx.name}:input-expand{i}", kind=SPATIAL))
    return data.copy_template(f"{ctx.name}:input").with_dims([*dims, feature], feature_dim=feature)


def prepared_input(x: Data, prep: Data, spatial: Sequence[Dim]) -> Any:
    """The masked input as a [B, spatial..., F] tensor in the layout of the prepared template ``prep``."""
    x_dims = [d for d in x.dims if d is not x.feature_dim]
    tensor = transpose_to(x.masked_tensor(), x.dims, [*x_dims, x.feature_dim])
    if prep.batch_ndim != x.batch_ndim or prep.feature_dim is not x.feature_dim:
        shape = tf.shape(tensor)[:-1]
        extra = [d.size for d in prep.dims[len(x_dims):]]
        tensor = tf.reshape(tensor, tf.concat([shape, extra], 0))
    return transpose_to(tensor, prep.dims, _layout(prep, spatial))


@register_layer("conv")
class ConvLayer(LayerBase):
    """N-d convolution over the spatial axes (all but batch and feature), then bias and activation.

    Config: ``{"class": "conv", "from": "x", "n_out": 32, "filter_size": (3,), "padding": "same",
    "strides": 1, "dilation_rate": 1, "activation": "relu"}``. 2D on [B, T, F] input: ``"input_add_feature_dim":
    True`` (F becomes spatial, a feature dim of 1 is added) or ``"input_split_feature_dim": n``.
    Params: ``W`` [*filter_size, in, out], ``bias`` [out].
    """

    example = {"from": "data", "n_out": 3, "filter_size": (3,), "padding": "valid", "strides": 2,
               "activation": "relu"}

    class Opts(LayerOpts):
        filter_size: Sequence[int]
        n_out: int | None = None
        out_dim: Dim | None = None
        padding: str = "same"
        strides: int | Sequence[int] = 1
        dilation_rate: int | Sequence[int] = 1
        activation: str | None = None
        with_bias: bool = True
        forward_weights_init: str | float = "glorot_uniform"
        bias_init: str | float = 0.0
        input_expand_dims: int = 0
        input_add_feature_dim: bool = False
        input_split_feature_dim: int | None = None

    @classmethod
    def out_template(cls, ctx: LayerContext, opts: Opts) -> Data:
        prep = _input_prep(ctx, ctx.input_template(), opts)
        win = SpatialWindows(ctx, prep, opts.filter_size, opts.strides, opts.dilation_rate, opts.padding,
                             size_option="filter_size")
        ctx.activation(opts.activation)
        feature = ctx.out_feature_dim(opts.n_out, opts.out_dim)
        ctx.state.update(prep=prep, windows=win)
        dims = [prep.dims[prep.batch_dim_axis], *win.out_dims, feature]
        return prep.copy_template(ctx.name).with_dims(dims, feature_dim=feature, time_dim=cls._time(prep, win))

    @staticmethod
    def _time(prep: Data, win: SpatialWindows) -> Dim | None:
        """The output dim that takes the time role."""
        if prep.time_dim not in win.spatial:
            return None
        return win.out_dims[win.spatial.index(prep.time_dim)]

    def __init__(self, ctx: LayerContext, opts: Opts):
        super().__init__(ctx)
        self.prep, self.win = ctx.state["prep"], ctx.state["windows"]
        n_in, n_out = self.prep.feature_dim.size, self.out.feature_dim.size
        self.activation = ctx.activation(opts.activation)
        self.W = self.add_param("W", (*self.win.sizes, n_in, n_out), init=opts.forward_weights_init)
        self.b = self.add_param("bias", (n_out,), init=opts.bias_init) if opts.with_bias else None

    def __call__(self, sources: Sequence[Data], *, train: bool) -> Data:
        x = self.input_data(sources)
        tensor = self.win.pad_same(prepared_input(x, self.prep, self.win.spatial))
        y = tf.nn.convolution(tensor, self.W, strides=self.win.strides, padding="VALID",
                              dilations=self.win.dilation)
        if self.b is not None:
            y += self.b
        return self.out.with_tensor(self.activation(y), like=x, dyn_sizes=self.win.out_sizes(x))


@register_layer("pool")
class PoolLayer(LayerBase):
    """Max or average pooling over the spatial axes; padded frames never win a max or enter an average.

    Config: ``{"class": "pool", "from": "x", "mode": "max", "pool_size": (2,), "padding": "same"}``;
    ``strides`` default to ``pool_size``.
    """

    example = {"from": "data", "mode": "max", "pool_size": (2,), "padding": "same"}

    class Opts(LayerOpts):
        mode: str
        pool_size: Sequence[int]
        padding: str = "valid"
        strides: int | Sequence[int] | None = None
        dilation_rate: int | Sequence[int] = 1

    @classmethod
    def out_template(cls, ctx: LayerContext, opts: Opts) -> Data:
        data = ctx.input_template()
        if opts.mode not in ("max", "avg"):
            raise ctx.error(f'"mode": expected "max" or "avg", got {opts.mode!r}')
        if data.sparse or data.feature_dim is None or data.batch_dim_axis is None:
            raise ctx.error(f"needs dense input with a batch axis and a feature dim, got {data.describe()}")
        strides = opts.pool_size if opts.strides is None else opts.strides
        win = SpatialWindows(ctx, data, opts.pool_size, strides, opts.dilation_rate, opts.padding,
                             size_option="pool_size")
        ctx.state["windows"] = win
        return data.with_dims([data.dims[data.batch_dim_axis], *win.out_dims, data.feature_dim],
                              time_dim=ConvLayer._time(data, win))

    def __init__(self, ctx: LayerContext, opts: Opts):
        super().__init__(ctx)
        self.win, self.mode = ctx.state["windows"], opts.mode

    def __call__(self, sources: Sequence[Data], *, train: bool) -> Data:
        x = self.input_data(sources)
        win = self.win
        layout = _layout(x, win.spatial)
        mask = tf.ones_like(x.tensor, dtype=tf.bool)
        for dim in x.dynamic_dims():
            mask = tf.logical_and(mask, x.mask_broadcast(dim))
        mask = transpose_to(mask, x.dims, layout)
        tensor = transpose_to(x.tensor, x.dims, layout)
        pool = dict(window_shape=win.sizes, strides=win.strides, padding="VALID", dilations=win.dilation)
        if self.mode == "max":
            low = tensor.dtype.min
            tensor = win.pad_same(tf.where(mask, tensor, low), low)
            y = tf.nn.pool(tensor, pooling_type="MAX", **pool)
            y = tf.where(y <= low, tf.zeros_like(y), y)
        else:
            weight = win.pad_same(tf.cast(mask, tensor.dtype))
            total = tf.nn.pool(win.pad_same(tf.where(mask, tensor, tf.zeros_like(tensor))), pooling_type="AVG", **pool)
            count = tf.nn.pool(weight, pooling_type="AVG", **pool)
            y = tf.math.divide_no_nan(total, count)
        return self.out.with_tensor(y, like=x, dyn_sizes=win.out_sizes(x))
