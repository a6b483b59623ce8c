"""``masked_computation`` (a layer computed only where a mask is set) and ``unmask`` (its frames spread back)."""

from __future__ import annotations

import dataclasses
from typing import Any, Mapping, Sequence

import tensorflow as tf

from returnn.tensor.align import aligned_tensor
from returnn.tensor.data import Data
from returnn.tensor.dim import spatial_dim
from returnn.tf.layers.base import LayerBase, LayerContext, LayerOpts, layer_ref, register_layer


def _mask_tensor(mask: Data, dims: Sequence[Any]) -> Any:
    """The bool mask aligned to ``dims`` (a subset of them, in their order)."""
    return tf.cast(aligned_tensor(mask, [dim for dim in dims if mask.find_axis(dim) is not None]), tf.bool)


@register_layer("masked_computation")
class MaskedComputationLayer(LayerBase):
    """The layer ``unit`` (a layer dict) computed only where ``mask`` is True.

    Config: ``{"class": "masked_computation", "mask": "prev:emit", "from": "x",
    "unit": {"class": "rec", "unit": "lstm", "n_out": 64}}``. Inside a rec loop, on a step where the
    mask ([B] bool) is False, the output and the unit's state stay as they were (zeros before the first
    step it computes). Outside a loop the mask ([B, T]) packs the frames where it is True into a new
    time axis (lengths: the count per sequence), the unit runs over that; ``unmask`` spreads them back.
    Params: those of ``unit``, named ``<this layer>/output/...``.
    """

    example = {"from": "data", "mask": "m", "unit": {"class": "linear", "n_out": 3, "activation": "tanh"}}
    example_extra = {"r": {"class": "reduce", "mode": "sum", "axes": "F", "from": "data"},
                     "m": {"class": "compare", "from": "r", "kind": "greater", "value": 0.0}}

    class Opts(LayerOpts):
        unit: dict
        mask: str = layer_ref(dataclasses.MISSING)

    @classmethod
    def nested_net_dicts(cls, layer_dict: Mapping[str, Any]) -> list[Mapping[str, Any]]:
        unit = layer_dict.get("unit")
        return [{"output": unit}] if isinstance(unit, Mapping) else []

    @classmethod
    def out_template(cls, ctx: LayerContext, opts: Opts) -> Data:
        mask = ctx.dependency(opts.mask)
        if mask.dtype != "bool" or mask.feature_dim is not None or mask.sparse:
            raise ctx.error(f'"mask": expected a bool layer without feature axis, got {mask.describe()} {mask.dtype}')
        src = ctx.input_template()
        if "class" not in opts.unit:
            raise ctx.error(f'"unit": expected a layer dict with "class", got {opts.unit!r}')
        if ctx.inside_loop:
            inner_in = src.copy_template("data")
        else:
            if src.time_dim is None or src.time_dim not in mask.dims:
                raise ctx.error(f'"mask" {mask.describe()} must have the time axis of the input {src.describe()}')
            packed = spatial_dim(None, f"{ctx.name}:masked-time")
            seq = src.copy_template("data").copy_as_batch_major()
            seq = seq.copy_move_axis(seq.time_dim_axis, 1)  # the layout __call__ packs into
            inner_in = seq.with_dims([packed if dim is src.time_dim else dim for dim in seq.dims], time_dim=packed)
        inner = ctx.make_subnetwork({"output": {**opts.unit, "from": "data"}}, extern_data={"data": inner_in})
        ctx.state["inner"], ctx.state["nested_networks"] = inner, [inner]
        return inner.templates["output"]

    def __init__(self, ctx: LayerContext, opts: Opts):
        super().__init__(ctx)
        self.inner = ctx.state["inner"]
        self.inner.instantiate()
        self.params = dict(self.inner.get_params())
        self.mask_ref = opts.mask

    def __call__(self, sources: Sequence[Data], *, train: bool, refs: Mapping[str, Data] | None = None) -> Data:
        x = self.input_data(sources).copy_as_batch_major()
        x = x.copy_move_axis(x.time_dim_axis, 1)
        mask = _mask_tensor(refs[self.mask_ref], x.dims[:2])
        mask = tf.logical_and(mask, x.sequence_mask())
        lens = tf.reduce_sum(tf.cast(mask, tf.int32), axis=1)
        # the frames where the mask is set, moved to the front of each sequence
        order = tf.argsort(tf.cast(tf.logical_not(mask), tf.int32), axis=1, stable=True)
        packed = tf.gather(x.tensor, order[:, :tf.reduce_max(lens)], axis=1, batch_dims=1)
        template = self.inner.extern_data["data"]
        data = template.copy_template().with_dims(
            [x.dims[0], template.time_dim] + [dim for dim in x.dims[2:]], time_dim=template.time_dim)
        data = data.with_tensor(packed, dyn_sizes={template.time_dim: lens})
        out = self.inner({"data": data}, train=train)["output"]
        return self.out.with_tensor(out.tensor, like=out)

    def initial_state(self, batch_size: Any) -> Any:
        if not self.ctx.inside_loop:
            return None
        template = self.out
        shape = tf.concat([[batch_size], [dim.size for dim in template.dims if not dim.is_batch]], 0)
        return {"output": tf.zeros(shape, template.dtype), "inner": self.inner.initial_states(batch_size)}

    def step(self, sources: Sequence[Data], state: Any, *, train: bool, i: Any,
             refs: Mapping[str, Data] | None = None) -> tuple[Data, Any]:
        x = self.input_data(sources)
        values, inner_state = self.inner.run_step({"data": x}, state["inner"], i=i, train=train)
        mask = tf.reshape(tf.cast(refs[self.mask_ref].tensor, tf.bool), [-1])

        def keep(new: Any, old: Any) -> Any:
            return tf.where(tf.reshape(mask, [-1] + [1] * (new.shape.rank - 1)), new, old)

        out = aligned_tensor(values["output"], self.out.dims)
        new_state = {"output": keep(out, state["output"]),
                     "inner": tf.nest.map_structure(keep, inner_state, state["inner"])}
        return self.out.with_tensor(new_state["output"]), new_state


@register_layer("unmask")
class UnmaskLayer(LayerBase):
    """The frames of a ``masked_computation`` (outside a loop) spread back over the original time axis: each
    frame repeats the last computed one (zeros before the first). Inside a rec loop it is a copy.

    Config: ``{"class": "unmask", "from": "masked", "mask": "emit"}`` with the same ``mask`` as the
    ``masked_computation``.
    Params: none.
    """

    example = {"from": "mc", "mask": "m"}
    example_extra = {**MaskedComputationLayer.example_extra,
                     "mc": {"class": "masked_computation", **MaskedComputationLayer.example}}

    class Opts(LayerOpts):
        mask: str = layer_ref(dataclasses.MISSING)

    @classmethod
    def out_template(cls, ctx: LayerContext, opts: Opts) -> Data:
        mask = ctx.dependency(opts.mask)
        src = ctx.input_template()
        if ctx.inside_loop:
            return src.copy_template(ctx.name)
        if mask.time_dim is None or src.time_dim is None:
            raise ctx.error(f'needs a "mask" with a time axis and a packed input, got {mask.describe()}, '
                            f"{src.describe()}")
        dims = [mask.dims[mask.batch_dim_axis], mask.time_dim] + [dim for dim in src.dims
                                                                 if not dim.is_batch and dim is not src.time_dim]
        return src.copy_template(ctx.name).with_dims(dims, time_dim=mask.time_dim)

    def __init__(self, ctx: LayerContext, opts: Opts):
        super().__init__(ctx)
        self.mask_ref = opts.mask

    def __call__(self, sources: Sequence[Data], *, train: bool, refs: Mapping[str, Data] | None = None) -> Data:
        x = self.input_data(sources)
        if self.ctx.inside_loop:
            return self.out.with_tensor(x.tensor, like=x)
        mask_data = refs[self.mask_ref].copy_as_batch_major()
        mask_data = mask_data.copy_move_axis(mask_data.time_dim_axis, 1)
        mask = tf.logical_and(tf.cast(mask_data.tensor, tf.bool), mask_data.sequence_mask())
        packed = x.copy_as_batch_major()
        packed = packed.copy_move_axis(packed.time_dim_axis, 1)
        index = tf.cumsum(tf.cast(mask, tf.int32), axis=1) - 1  # [B, T]: the packed frame each frame repeats
        padded = tf.concat([tf.zeros_like(packed.tensor[:, :1]), packed.tensor], axis=1)
        frames = tf.gather(padded, index + 1, axis=1, batch_dims=1)
        out = Data(self.out.name, (mask_data.dims[0], mask_data.time_dim) + packed.dims[2:], dtype=self.out.dtype,
                   time_dim=mask_data.time_dim).with_tensor(frames, dyn_sizes=mask_data.dyn_sizes)
        return self.out.with_tensor(aligned_tensor(out, self.out.dims), like=mask_data)
