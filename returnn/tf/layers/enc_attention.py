"""Attention of a query over a whole encoder ``base``: dot_attention, concat_attention, gauss_window_attention.

The query is one decoder frame inside a rec loop ([B, F], ``base`` e.g. ``"base:encoder"`` [B, T, F]) or
has axes of its own, e.g. every frame of a sequence ([B, T', F]): the output keeps the query's axes and
ends in the base's feature dim. None of them carries loop state.
"""

from __future__ import annotations

import math
from typing import Any, Mapping, Sequence

import tensorflow as tf

from returnn.tensor.align import aligned_tensor
from returnn.tensor.data import Data
from returnn.tensor.dim import SPATIAL, Dim
from returnn.tf.layers.base import LayerBase, LayerContext, LayerOpts, layer_ref, register_layer

ENC_EXTERN = {"data": {"dim": 5}, "enc": {"dim": 4}, "classes": {"dim": 4, "sparse": True}}


def base_template(ctx: LayerContext, ref: str | None, option: str) -> Data:
    """The template of a ``base`` / ``base_ctx`` layer, checked to be [B, T, F]."""
    if ref is None:
        raise ctx.error(f'"{option}": required, the name of an encoder layer [B, T, F]')
    data = ctx.ref_templates[ref]
    if (data.batch_dim_axis is None or data.time_dim is None or data.feature_dim is None or data.batch_ndim != 3
            or data.sparse):
        raise ctx.error(f'"{option}": expected a dense [B, T, F] layer, got {data.describe()}')
    return data


def batch_time_feature(data: Data) -> Any:
    """The tensor of a [B, T, F] layer in that order, padded frames 0."""
    return aligned_tensor(data.replace(tensor=data.masked_tensor()),
                          [data.dims[data.batch_dim_axis], data.time_dim, data.feature_dim])


def query_template(ctx: LayerContext, data: Data) -> Data:
    """The query batch-major with its feature axis last; errors name the layer."""
    if data.sparse or data.batch_dim_axis is None or data.feature_dim is None or data.feature_dim.size is None:
        raise ctx.error(f"input {data.describe()}: expected dense [B, ..., F] with a static F")
    return data.copy_as_batch_major().copy_with_feature_last()


def weighted_sum(energy: Any, base: Data) -> Any:
    """Softmax of ``energy`` [B, ..., T] over the valid frames of ``base``, then the weighted sum [B, ..., F]."""
    mask = tf.sequence_mask(base.get_dyn_size(base.time_dim), maxlen=tf.shape(energy)[-1])  # [B, T]
    mask = tf.reshape(mask, tf.concat([tf.shape(mask)[:1], tf.ones([tf.rank(energy) - 2], tf.int32),
                                       tf.shape(mask)[1:]], 0))
    weights = tf.nn.softmax(tf.where(mask, energy, energy.dtype.min), axis=-1)
    weights = tf.where(mask, weights, 0.0)  # a sequence without frames attends to nothing
    return tf.einsum("b...t,btf->b...f", weights, batch_time_feature(base))


class _ContextAttentionLayer(LayerBase):
    """Base of dot_attention / concat_attention: energies of the query against ``base_ctx`` [B, T, F_q],
    softmax over the valid frames, weighted sum of ``base`` [B, T, F]."""

    example = {"from": "data", "base": "data:enc", "base_ctx": "ctx"}
    example_extra = {"ctx": {"class": "linear", "from": "data:enc", "n_out": 5}}
    example_extern_data = ENC_EXTERN

    class Opts(LayerOpts):
        base: str | None = layer_ref()
        base_ctx: str | None = layer_ref()

    @classmethod
    def out_template(cls, ctx: LayerContext, opts: Opts) -> Data:
        query = query_template(ctx, ctx.input_template())
        base, base_ctx = base_template(ctx, opts.base, "base"), base_template(ctx, opts.base_ctx, "base_ctx")
        if base_ctx.time_dim is not base.time_dim and not base_ctx.time_dim.matches(base.time_dim):
            raise ctx.error(f'"base_ctx" {base_ctx.describe()} and "base" {base.describe()} differ in time')
        if base_ctx.feature_dim.size != query.feature_dim.size:
            raise ctx.error(f'"base_ctx" {base_ctx.describe()} needs the feature dim of the input '
                            f"{query.describe()}")
        return query.copy_template(ctx.name).with_dims([*query.dims[:-1], base.feature_dim],
                                                       feature_dim=base.feature_dim, dtype="float32")

    def __init__(self, ctx: LayerContext, opts: Opts):
        super().__init__(ctx)
        self.opts = opts

    def energy(self, query: Any, base_ctx: Any) -> Any:
        """[B, ..., T] energies of the query [B, ..., F] against ``base_ctx`` [B, T, F] (each subclass's own)."""
        raise TypeError(f"{type(self).__name__} must define energy()")

    def __call__(self, sources: Sequence[Data], *, train: bool, refs: Mapping[str, Data] | None = None) -> Data:
        x = self.input_data(sources).copy_as_batch_major().copy_with_feature_last()
        base, base_ctx = refs[self.opts.base], refs[self.opts.base_ctx]
        energy = self.energy(x.tensor, batch_time_feature(base_ctx))
        return self.out.with_tensor(weighted_sum(energy, base), like=x)


@register_layer("dot_attention")
class DotAttentionLayer(_ContextAttentionLayer):
    """Global attention with dot-product energies: ``softmax_t(q . base_ctx[t] * energy_factor)`` weights ``base``.

    Config: ``{"class": "dot_attention", "from": "s", "base": "base:encoder", "base_ctx": "base:enc_ctx"}``;
    the input (a [B, F] decoder frame, or [B, ..., F]) has the feature dim of ``base_ctx``; the output is
    [B, ..., F of base]. ``energy_factor`` is like an inverse temperature (1/sqrt(F) in Transformers).
    """

    class Opts(_ContextAttentionLayer.Opts):
        energy_factor: float | None = None

    def energy(self, query: Any, base_ctx: Any) -> Any:
        energy = tf.einsum("b...f,btf->b...t", query, base_ctx)
        return energy if self.opts.energy_factor is None else energy * self.opts.energy_factor


@register_layer("concat_attention")
class ConcatAttentionLayer(_ContextAttentionLayer):
    """Global additive (Bahdanau) attention: ``softmax_t(v . tanh(base_ctx[t] + q))`` weights ``base``.

    Config: ``{"class": "concat_attention", "from": "s_transformed", "base": "base:encoder",
    "base_ctx": "base:enc_ctx"}``; the input (a [B, F] decoder frame, or [B, ..., F]) has the feature dim of
    ``base_ctx``; the output is [B, ..., F of base].

    Params: ``v`` [F of base_ctx].
    """

    def __init__(self, ctx: LayerContext, opts: _ContextAttentionLayer.Opts):
        super().__init__(ctx, opts)
        self.v = self.add_param("v", (ctx.input_template().feature_dim.size,))

    def energy(self, query: Any, base_ctx: Any) -> Any:
        rank = len(query.shape)
        base_ctx = tf.reshape(base_ctx, tf.concat([tf.shape(base_ctx)[:1], tf.ones([rank - 2], tf.int32),
                                                   tf.shape(base_ctx)[1:]], 0))  # [B, 1..., T, F]
        return tf.tensordot(tf.tanh(base_ctx + query[..., None, :]), self.v, axes=1)


@register_layer("gauss_window_attention")
class GaussWindowAttentionLayer(LayerBase):
    """Gaussian-weighted sum of ``window_size`` base frames around a position (the input, float, [B] or [B, 1]).

    Config: ``{"class": "gauss_window_attention", "from": "t", "base": "base:input", "window_size": 10,
    "inner_size": 5}``. The window starts at ``round(t) - window_size // 2``; frame ``j`` gets weight
    ``N(j; t, std)``, frames outside the sequence repeat its first / last frame (as RETURNN clips them).
    ``inner_size`` adds an axis of that size before the feature: centers ``t + k * inner_size_step -
    inner_size / 2`` for ``k < inner_size``. Output [B, (inner_size), F of base]; a position input with axes of
    its own ([B, T']) keeps them.
    """

    example = {"from": "pos", "base": "data:enc", "window_size": 3, "inner_size": 2}
    example_extra = {"pos": {"class": "reduce", "from": "data", "mode": "sum", "axes": "F"}}
    example_extern_data = ENC_EXTERN

    class Opts(LayerOpts):
        window_size: int
        base: str | None = layer_ref()
        std: float = 1.0
        inner_size: int | None = None
        inner_size_step: float = 0.5

    @classmethod
    def out_template(cls, ctx: LayerContext, opts: Opts) -> Data:
        base = base_template(ctx, opts.base, "base")
        position = cls._position_template(ctx, ctx.input_template())
        if opts.window_size < 1 or (opts.inner_size is not None and opts.inner_size < 1) or opts.std <= 0:
            raise ctx.error(f'"window_size" {opts.window_size}, "inner_size" {opts.inner_size}, "std" {opts.std}: '
                            f"expected positive values")
        inner = [] if opts.inner_size is None else [Dim(opts.inner_size, f"{ctx.name}:inner", kind=SPATIAL)]
        return position.copy_template(ctx.name).with_dims([*position.dims, *inner, base.feature_dim],
                                                          feature_dim=base.feature_dim, dtype="float32",
                                                          sparse_dim=None)

    @staticmethod
    def _position_template(ctx: LayerContext, data: Data) -> Data:
        """The positions batch-major, without a size-1 feature axis."""
        if data.batch_dim_axis is None:
            raise ctx.error(f"input {data.describe()}: expected positions [B] or [B, 1]")
        data = data.copy_as_batch_major().copy_with_feature_last()
        if data.feature_dim is not None:
            if data.feature_dim.size != 1:
                raise ctx.error(f"input {data.describe()}: expected positions [B] or [B, 1], one per sequence")
            data = data.with_dims([dim for dim in data.dims if dim is not data.feature_dim])
        return data

    def __init__(self, ctx: LayerContext, opts: Opts):
        super().__init__(ctx)
        self.opts = opts
        self.position = self._position_template(ctx, ctx.input_template())

    def _weights(self, t: Any) -> tuple[Any, Any]:
        """Frame indices [B, ..., W] of the window and their Gaussian weights [B, ..., W, K]."""
        o = self.opts
        start = tf.cast(tf.round(t), tf.int32) - o.window_size // 2
        idx = start[..., None] + tf.range(o.window_size)  # [B, ..., W]
        offsets = tf.constant([0.0] if o.inner_size is None else
                              [k * o.inner_size_step - o.inner_size / 2.0 for k in range(o.inner_size)])
        centers = t[..., None, None] + offsets  # [B, ..., 1, K]
        distance = centers - tf.cast(idx, tf.float32)[..., None]
        weights = tf.exp(-distance ** 2 / (2 * o.std ** 2)) / (o.std * math.sqrt(2 * math.pi))
        return idx, weights

    def __call__(self, sources: Sequence[Data], *, train: bool, refs: Mapping[str, Data] | None = None) -> Data:
        x = self.input_data(sources).copy_as_batch_major().copy_with_feature_last()
        t = tf.cast(tf.reshape(x.tensor, tf.shape(x.tensor)[:self.position.batch_ndim]), tf.float32)
        base = refs[self.opts.base]
        frames = batch_time_feature(base)  # [B, T, F]
        idx, weights = self._weights(t)
        last = tf.maximum(base.get_dyn_size(base.time_dim) - 1, 0)
        last = tf.reshape(last, tf.concat([[-1], tf.ones([tf.rank(idx) - 1], tf.int32)], 0))
        gathered = tf.gather(frames, tf.clip_by_value(idx, 0, last), axis=1, batch_dims=1)  # [B, ..., W, F]
        y = tf.einsum("b...wf,b...wk->b...kf", gathered, weights)
        if self.opts.inner_size is None:
            y = y[..., 0, :]
        return self.out.with_tensor(y, like=x)
