"""Basic layers: source (extern data), copy, dropout, activation, concat."""

from __future__ import annotations

from typing import Any, Mapping, Sequence

import tensorflow as tf

from returnn.tensor.align import aligned_tensor, merged_dyn_sizes
from returnn.tensor.data import Data
from returnn.tensor.dim import Dim
from returnn.tf.layers.base import LayerBase, LayerContext, LayerOpts, register_layer


@register_layer("source", aliases=("data",))
class SourceLayer(LayerBase):
    """The extern data of key ``data_key``, as a layer.

    Config: ``{"class": "source", "data_key": "classes"}``
    """

    default_from = "none"
    example = {"data_key": "data"}

    class Opts(LayerOpts):
        data_key: str = "data"

    @classmethod
    def out_template(cls, ctx: LayerContext, opts: Opts) -> Data:
        if ctx.sources:
            raise ctx.error('takes no "from"; use "data_key" to choose the extern data')
        return ctx.dependency(f"data:{opts.data_key}")

    def __init__(self, ctx: LayerContext, opts: Opts):
        super().__init__(ctx)
        self.ref = f"data:{opts.data_key}"

    def __call__(self, sources: Sequence[Data], *, train: bool, refs: Mapping[str, Data]) -> Data:
        data = refs[self.ref]
        return self.out.with_tensor(data.tensor, like=data)


@register_layer("copy")
class CopyLayer(LayerBase):
    """Its input unchanged (several sources: concatenated on the feature axis).

    Config: ``{"class": "copy", "from": ["a", "b"]}``
    """

    frame_wise = True

    example = {"from": ["data", "data"]}

    @classmethod
    def out_template(cls, ctx: LayerContext, opts: LayerOpts) -> Data:
        return ctx.input_template()

    def __call__(self, sources: Sequence[Data], *, train: bool) -> Data:
        x = self.input_data(sources)
        return self.out.with_tensor(x.tensor, like=x)


@register_layer("dropout")
class DropoutLayer(CopyLayer):
    """Copy with ``dropout`` on its input in training (the option every layer has, here the purpose).

    Config: ``{"class": "dropout", "from": "enc", "dropout": 0.1, "dropout_noise_shape": {"T": 1}}``
    """

    frame_wise = True

    example = {"from": "data", "dropout": 0.5}


@register_layer("activation")
class ActivationLayer(LayerBase):
    """An activation function on its input (arithmetic of functions too: ``"2*sigmoid"``, ``"relu+tanh"``).

    Config: ``{"class": "activation", "from": "x", "activation": "relu"}``
    """

    frame_wise = True

    example = {"from": "data", "activation": "tanh"}

    class Opts(LayerOpts):
        activation: str | None

    @classmethod
    def out_template(cls, ctx: LayerContext, opts: Opts) -> Data:
        ctx.activation(opts.activation)
        return ctx.input_template()

    def __init__(self, ctx: LayerContext, opts: Opts):
        super().__init__(ctx)
        self.func = ctx.activation(opts.activation)
        self.is_softmax = opts.activation == "softmax"

    def __call__(self, sources: Sequence[Data], *, train: bool) -> Data:
        x = self.input_data(sources)
        out = self.out.with_tensor(self.func(x.tensor), like=x)
        return out.replace(logits=x.tensor) if self.is_softmax else out


@register_layer("concat")
class ConcatLayer(LayerBase):
    """Sources concatenated along one axis each (``("name", axis)`` pairs; a plain name: "F").

    Config: ``{"class": "concat", "from": [("a", "F"), ("b", "F")]}``. The other dims must match.
    Along a static axis the sizes add up; along a dynamic axis (time) each sequence's frames follow
    each other, and the lengths add up.
    """

    accepts_source_axes = True
    example = {"from": [("data", "F"), ("data", "F")]}

    class Opts(LayerOpts):
        out_dim: Dim | None = None

    @classmethod
    def out_template(cls, ctx: LayerContext, opts: Opts) -> Data:
        if not ctx.sources:
            raise ctx.error('needs sources in "from"')
        axes = [data.get_axis(axis if axis is not None else "F") for data, axis in zip(ctx.sources, ctx.source_axes)]
        cat_dims = [data.dims[axis] for data, axis in zip(ctx.sources, axes)]
        first, first_axis = ctx.sources[0], axes[0]
        for data, axis in zip(ctx.sources[1:], axes[1:]):
            rest = [dim for i, dim in enumerate(data.dims) if i != axis]
            first_rest = [dim for i, dim in enumerate(first.dims) if i != first_axis]
            if len(rest) != len(first_rest) or not all(any(a.matches(b) for b in first_rest) for a in rest):
                raise ctx.error(f"dims other than the concatenated axis differ: {first.describe()} vs {data.describe()}")
        if any(dim.is_dynamic for dim in cat_dims) and len({dim.kind for dim in cat_dims}) > 1:
            raise ctx.error(f"cannot concatenate dims {', '.join(d.describe() for d in cat_dims)} of different kinds")
        sizes = [dim.size for dim in cat_dims]
        total = None if None in sizes else sum(sizes)
        new_dim = opts.out_dim or Dim(total, f"{ctx.name}:concat", kind=cat_dims[0].kind)
        if new_dim.size != total:
            raise ctx.error(f'"out_dim" {new_dim.describe()} does not match the total size {total}')
        dims = list(first.dims)
        dims[first_axis] = new_dim
        changes: dict[str, Any] = {}
        if first.feature_dim is cat_dims[0]:
            changes["feature_dim"] = new_dim
        if first.time_dim is cat_dims[0]:
            changes["time_dim"] = new_dim
        return first.copy_template(ctx.name).with_dims(dims, **changes)

    def __init__(self, ctx: LayerContext, opts: Opts):
        super().__init__(ctx)
        self.axes = [data.get_axis(axis if axis is not None else "F") for data, axis in zip(ctx.sources, ctx.source_axes)]
        self.cat_axis = self.axes[0]
        self.new_dim = self.out.dims[self.cat_axis]

    def __call__(self, sources: Sequence[Data], *, train: bool) -> Data:
        parts = []
        for data, axis in zip(sources, self.axes):
            dims = [data.dims[axis] if i == self.cat_axis else dim for i, dim in enumerate(self.out.dims)]
            parts.append(aligned_tensor(data, dims))
        sizes = merged_dyn_sizes(sources)
        if not self.new_dim.is_dynamic:
            return self.out.with_tensor(tf.concat(parts, axis=self.cat_axis), dyn_sizes=sizes)
        lens = [data.get_dyn_size(data.dims[axis]) for data, axis in zip(sources, self.axes)]
        sizes[self.new_dim] = tf.add_n(lens)
        return self.out.with_tensor(self._concat_ragged(parts, lens), dyn_sizes=sizes)

    def _concat_ragged(self, parts: Sequence[Any], lens: Sequence[Any]) -> Any:
        """Per sequence, the valid frames of each part one after the other (batch-major gather)."""
        batch_axis = self.out.batch_dim_axis
        perm = [batch_axis, self.cat_axis] + [i for i in range(self.out.batch_ndim) if i not in (batch_axis, self.cat_axis)]
        inverse = [perm.index(i) for i in range(len(perm))]
        parts = [tf.transpose(part, perm) for part in parts]  # [B, T_i, ...]
        total_lens = tf.add_n(lens)
        max_len = tf.reduce_max(total_lens)
        positions = tf.range(max_len)[None, :]  # [1, T]
        result = tf.zeros_like(tf.gather(parts[0], tf.zeros_like(positions[0]), axis=1))
        offset = tf.zeros_like(lens[0])
        for part, length in zip(parts, lens):
            local = positions - offset[:, None]  # [B, T]
            valid = (local >= 0) & (local < length[:, None])
            idx = tf.clip_by_value(local, 0, tf.maximum(tf.shape(part)[1] - 1, 0))
            gathered = tf.gather(part, idx, axis=1, batch_dims=1)
            valid = tf.reshape(valid, tf.concat([tf.shape(valid), tf.ones([tf.rank(part) - 2], tf.int32)], 0))
            result = tf.where(valid, gathered, result)
            offset += length
        return tf.transpose(result, inverse)
