"""Normalization layers: batch_norm (masked statistics, moving averages) and layer_norm (over the features)."""

from __future__ import annotations

from typing import Any, Sequence

import tensorflow as tf

from returnn.tensor.data import Data
from returnn.tf.layers.base import LayerBase, LayerContext, LayerOpts, register_layer


def _check_dense_features(ctx: LayerContext) -> Data:
    """The input, which needs a static feature dim."""
    data = ctx.input_template()
    if data.sparse or data.feature_dim is None or data.feature_dim.size is None:
        raise ctx.error(f"needs dense input with a static feature dim, got {data.describe()}")
    return data


def _feature_shape(data: Data) -> list[int]:
    """Shape that broadcasts a [F] vector against ``data``'s tensor."""
    shape = [1] * data.batch_ndim
    shape[data.feature_dim_axis] = data.feature_dim.size
    return shape


def masked_moments(x: Data) -> tuple[Any, Any]:
    """Mean and variance per feature over every other axis, counting only valid frames (shape broadcastable)."""
    axes = [i for i in range(x.batch_ndim) if i != x.feature_dim_axis]
    tensor = x.tensor
    weight = tf.ones_like(tensor)
    for dim in x.dynamic_dims():
        weight *= tf.cast(x.mask_broadcast(dim), tensor.dtype)
    count = tf.maximum(tf.reduce_sum(weight, axes, keepdims=True), 1.0)
    mean = tf.reduce_sum(tf.where(weight > 0, tensor, 0.0), axes, keepdims=True) / count
    diff = tf.where(weight > 0, tensor - mean, 0.0)
    return mean, tf.reduce_sum(tf.square(diff), axes, keepdims=True) / count


@register_layer("batch_norm")
class BatchNormLayer(LayerBase):
    """Batch normalization over every axis but the feature axis; padded frames never enter the statistics.

    Config: ``{"class": "batch_norm", "from": "conv", "momentum": 0.1, "epsilon": 1e-3}``. Training normalizes
    with the batch statistics (``use_sample`` mixes in the moving ones, ``force_sample`` uses only those) and
    updates the moving averages (``new = (1 - momentum) * old + momentum * batch``); otherwise the moving
    statistics are used and left alone (``update_sample_only_in_training: False`` updates them then too).
    With ``delay_sample_update`` (default) the moving statistics a call uses are those from before its update.
    Params: ``batch_norm/v2_mean``, ``batch_norm/v2_variance`` (not trainable), ``batch_norm/v2_gamma``,
    ``batch_norm/v2_beta``, each [F].
    """

    example = {"from": "data", "momentum": 0.5}

    class Opts(LayerOpts):
        momentum: float = 0.1
        epsilon: float = 1e-3
        use_shift: bool = True
        use_std: bool = True
        use_sample: float = 0.0
        force_sample: bool = False
        update_sample_only_in_training: bool = True
        delay_sample_update: bool = True
        gamma_init: str | float = 1.0
        beta_init: str | float = 0.0
        masked_time: bool = True

    @classmethod
    def out_template(cls, ctx: LayerContext, opts: Opts) -> Data:
        data = _check_dense_features(ctx)
        if not 0.0 <= opts.momentum <= 1.0 or not 0.0 <= opts.use_sample <= 1.0:
            raise ctx.error(f'"momentum" / "use_sample": expected values in [0, 1], got {opts.momentum} / '
                            f"{opts.use_sample}")
        if opts.epsilon <= 0:
            raise ctx.error(f'"epsilon": expected a positive float, got {opts.epsilon}')
        return data

    def __init__(self, ctx: LayerContext, opts: Opts):
        super().__init__(ctx)
        n = ctx.input_template().feature_dim.size
        self.opts = opts
        self.mean = self.add_param("batch_norm/v2_mean", (n,), init=0.0, trainable=False)
        self.variance = self.add_param("batch_norm/v2_variance", (n,), init=1.0, trainable=False)
        self.gamma = self.add_param("batch_norm/v2_gamma", (n,), init=opts.gamma_init) if opts.use_std else None
        self.beta = self.add_param("batch_norm/v2_beta", (n,), init=opts.beta_init) if opts.use_shift else None

    def __call__(self, sources: Sequence[Data], *, train: bool) -> Data:
        x = self.input_data(sources)
        o = self.opts
        shape = _feature_shape(x)
        update = train or not o.update_sample_only_in_training
        mean, var = masked_moments(x if o.masked_time else x.replace(dyn_sizes={}))
        if o.delay_sample_update or not update:
            moving_mean, moving_var = tf.reshape(self.mean, shape), tf.reshape(self.variance, shape)
        if update:
            self.mean.assign((1.0 - o.momentum) * self.mean + o.momentum * tf.reshape(mean, [-1]))
            self.variance.assign((1.0 - o.momentum) * self.variance + o.momentum * tf.reshape(var, [-1]))
        if not o.delay_sample_update and update:
            moving_mean, moving_var = tf.reshape(self.mean, shape), tf.reshape(self.variance, shape)
        if not train or o.force_sample:
            mean, var = moving_mean, moving_var
        elif o.use_sample:
            mean = (1.0 - o.use_sample) * mean + o.use_sample * moving_mean
            var = (1.0 - o.use_sample) * var + o.use_sample * moving_var
        y = (x.tensor - mean) * tf.math.rsqrt(var + o.epsilon)
        if self.gamma is not None:
            y *= tf.reshape(self.gamma, shape)
        if self.beta is not None:
            y += tf.reshape(self.beta, shape)
        return self.out.with_tensor(y, like=x)


@register_layer("layer_norm")
class LayerNormLayer(LayerBase):
    """Layer normalization over the feature dim, with a learned scale and bias.

    Config: ``{"class": "layer_norm", "from": "att"}``
    Params: ``scale`` [F] (init 1), ``bias`` [F] (init 0).
    """

    frame_wise = True  # statistics over the feature dim of each frame alone

    example = {"from": "data"}

    class Opts(LayerOpts):
        epsilon: float = 1e-6

    @classmethod
    def out_template(cls, ctx: LayerContext, opts: Opts) -> Data:
        return _check_dense_features(ctx)

    def __init__(self, ctx: LayerContext, opts: Opts):
        super().__init__(ctx)
        n = ctx.input_template().feature_dim.size
        self.epsilon = opts.epsilon
        self.scale = self.add_param("scale", (n,), init=1.0)
        self.bias = self.add_param("bias", (n,), init=0.0)

    def __call__(self, sources: Sequence[Data], *, train: bool) -> Data:
        x = self.input_data(sources)
        axis = x.feature_dim_axis
        mean, var = tf.nn.moments(x.tensor, axes=[axis], keepdims=True)
        shape = _feature_shape(x)
        y = (x.tensor - mean) * tf.math.rsqrt(var + self.epsilon)
        return self.out.with_tensor(y * tf.reshape(self.scale, shape) + tf.reshape(self.bias, shape), like=x)
