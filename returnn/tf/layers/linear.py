"""Affine layers: linear (alias hidden, forward), softmax, embedding."""

from __future__ import annotations

from typing import Callable, Sequence

import tensorflow as tf

from returnn.tensor.data import Data
from returnn.tensor.dim import Dim
from returnn.tf.layers.base import LayerBase, LayerContext, LayerOpts, register_layer


@register_layer("linear", aliases=("hidden", "forward"))
class LinearLayer(LayerBase):
    """Affine map over the feature dim, then an optional activation; sparse input selects rows of ``W``.

    Config: ``{"class": "linear", "from": "enc", "n_out": 512, "activation": "relu"}``
    ``grad_filter``: in training, a sequence whose gradient at the pre-activation output has an entry with
    square >= ``grad_filter`` gets no gradient through this layer (RETURNN's filter against outliers).
    Params: ``W`` [in, out] and ``b`` [out], named as in RETURNN checkpoints.
    """

    frame_wise = True

    example = {"from": "data", "n_out": 3, "activation": "tanh"}
    default_activation: str | None = None

    class Opts(LayerOpts):
        n_out: int | None = None
        out_dim: Dim | None = None
        activation: str | None = None
        with_bias: bool = True
        forward_weights_init: str | float | None = None  # None: "param_init", else glorot_uniform
        bias_init: str | float = 0.0
        grad_filter: float | None = None

    @classmethod
    def out_template(cls, ctx: LayerContext, opts: Opts) -> Data:
        if opts.grad_filter is not None and opts.grad_filter < 0:
            raise ctx.error(f'"grad_filter": expected a threshold >= 0 (0 or None: off), got {opts.grad_filter}')
        src = ctx.input_template()
        if not src.sparse and src.feature_dim is None:
            raise ctx.error(f"input {src.describe()} has no feature axis")
        if not src.sparse and src.feature_dim.size is None:
            raise ctx.error(f"input {src.describe()} has a dynamic feature dim; W needs a static one")
        ctx.activation(cls._activation_name(opts))
        return src.copy_with_feature_last().with_feature_dim(ctx.out_feature_dim(opts.n_out, opts.out_dim))

    @classmethod
    def _activation_name(cls, opts: Opts) -> str | None:
        """The configured activation, else the class default (softmax for the softmax layer)."""
        return opts.activation if opts.activation is not None else cls.default_activation

    def __init__(self, ctx: LayerContext, opts: Opts):
        super().__init__(ctx)
        src = ctx.input_template()
        n_in, n_out = src.dim, self.out.feature_dim.size
        self.activation_name = self._activation_name(opts)
        self.activation = ctx.activation(self.activation_name)
        self.W = self.add_param("W", (n_in, n_out), init=opts.forward_weights_init)
        self.b = self.add_param("b", (n_out,), init=opts.bias_init) if opts.with_bias else None
        self.grad_filter = opts.grad_filter

    def __call__(self, sources: Sequence[Data], *, train: bool) -> Data:
        x = self.input_data(sources)
        if x.sparse:
            y = tf.gather(self.W, tf.cast(x.tensor, tf.int32))
        else:
            y = tf.tensordot(x.copy_with_feature_last().tensor, self.W, axes=1)
        if self.b is not None:
            y += self.b
        if self.grad_filter:
            batch_axis = x.batch_dim_axis if x.sparse else x.copy_with_feature_last().batch_dim_axis
            y = filter_grad(y, self.grad_filter, batch_axis=batch_axis)
        out = self.out.with_tensor(self.activation(y), like=x)
        return out.replace(logits=y) if self.activation_name == "softmax" else out


def filter_grad(x: tf.Tensor, threshold: float, *, batch_axis: int | None) -> tf.Tensor:
    """``x`` unchanged; in the gradient, each batch entry whose largest squared entry is >= ``threshold``
    is zeroed (the whole gradient when there is no batch axis)."""

    @tf.custom_gradient
    def identity(value: tf.Tensor) -> tuple[tf.Tensor, Callable]:
        def grad(dy: tf.Tensor) -> tf.Tensor:
            axes = [axis for axis in range(dy.shape.rank) if axis != batch_axis]
            keep = tf.reduce_max(tf.square(dy), axis=axes, keepdims=True) < threshold
            return tf.where(keep, dy, tf.zeros_like(dy))

        return tf.identity(value), grad

    return identity(x)


@register_layer("softmax")
class SoftmaxLayer(LinearLayer):
    """Linear with softmax activation (the classic output layer); losses use its logits.

    Config: ``{"class": "softmax", "from": "lstm", "loss": "ce"}`` (``n_out`` from the target)
    Params: ``W`` [in, out], ``b`` [out].
    """

    example = {"from": "data", "loss": "ce", "target": "classes"}
    default_activation = "softmax"


@register_layer("embedding")
class EmbeddingLayer(LinearLayer):
    """A learned vector per class index: linear on sparse input, without bias by default.

    Config: ``{"class": "embedding", "from": "data:classes", "n_out": 128}``
    Params: ``W`` [vocab, out] (``b`` [out] with ``"with_bias": True``).
    """

    example = {"from": "data:classes", "n_out": 4}

    class Opts(LinearLayer.Opts):
        with_bias: bool = False
        forward_weights_init: str | float = "random_normal(stddev=1.0)"

    @classmethod
    def out_template(cls, ctx: LayerContext, opts: Opts) -> Data:
        if not ctx.input_template().sparse:
            raise ctx.error(f"needs sparse input (class indices), got {ctx.input_template().describe()}")
        return super().out_template(ctx, opts)
