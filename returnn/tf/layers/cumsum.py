"""``cumsum``: running sums along an axis; inside a rec loop, over the steps (the sum so far is the state)."""

from __future__ import annotations

from typing import Any, Mapping, Sequence

import tensorflow as tf

from returnn.tensor.data import Data
from returnn.tf.layers.base import LayerBase, LayerContext, LayerOpts, register_layer
from returnn.tf.layers.shape import non_batch_axis_of


def loop_axis(ctx: LayerContext, data: Data, axis: Any) -> bool:
    """Whether ``axis`` means the steps of the enclosing rec loop: "T" for a frame without time axis in a loop."""
    return ctx.inside_loop and data.time_dim is None and isinstance(axis, str) and axis.lower() in ("t", "time")


@register_layer("cumsum")
class CumsumLayer(LayerBase):
    """Cumulative sum along ``axis`` (default "T"); ``reverse`` sums from the end of each sequence.

    Config: ``{"class": "cumsum", "from": "x", "axis": "T"}``. ``additional_left_summand_per_element`` is
    added to every element first. Padded frames count as 0, so reverse sums start at each sequence's own
    last frame. Inside a rec loop ("T" of a frame without time axis) it sums over the steps: the running sum
    is the layer's state (not with ``reverse``).
    """

    @classmethod
    def runs_on_sequences(cls, layer_dict: Mapping[str, Any]) -> bool:
        return layer_dict.get("axis", "T") in ("T", "t") and not layer_dict.get("reverse")  # a running sum

    example = {"from": "data", "additional_left_summand_per_element": 0.5}

    class Opts(LayerOpts):
        axis: Any = "T"
        additional_left_summand_per_element: float | None = None
        reverse: bool = False

    @classmethod
    def out_template(cls, ctx: LayerContext, opts: Opts) -> Data:
        data = ctx.input_template()
        if data.sparse:
            raise ctx.error(f"needs dense input, got {data.describe()}")
        if loop_axis(ctx, data, opts.axis):
            if opts.reverse:
                raise ctx.error('"reverse": not possible over the steps of a rec loop (later steps are unknown)')
            if data.batch_dim_axis is None or any(dim.size is None for dim in data.dims if not dim.is_batch):
                raise ctx.error(f"inside a rec loop the running sum needs a frame [B, ...] of static dims, got "
                                f"{data.describe()}")
        else:
            non_batch_axis_of(ctx, data, opts.axis, "axis")
        return data.copy_template(ctx.name)

    def __init__(self, ctx: LayerContext, opts: Opts):
        super().__init__(ctx)
        data = ctx.input_template()
        self.in_loop = loop_axis(ctx, data, opts.axis)
        self.axis = None if self.in_loop else data.get_axis(opts.axis)
        self.opts = opts

    def _summands(self, x: Data) -> Any:
        """The input plus ``additional_left_summand_per_element``."""
        summand = self.opts.additional_left_summand_per_element
        return x.tensor if summand is None else x.tensor + tf.cast(summand, x.tensor.dtype)

    def __call__(self, sources: Sequence[Data], *, train: bool) -> Data:
        if self.in_loop:
            raise self.ctx.error("inside a rec loop this layer runs through step (it carries the running sum)")
        x = self.input_data(sources)
        dim = x.dims[self.axis]
        y = self._summands(x)
        if dim.is_dynamic:
            y = tf.where(x.mask_broadcast(dim), y, tf.zeros_like(y))
        return self.out.with_tensor(tf.cumsum(y, axis=self.axis, reverse=self.opts.reverse), like=x)

    def initial_state(self, batch_size: Any) -> Any:
        """Inside a rec loop: the sum of no steps, zeros of the frame's shape."""
        if not self.in_loop:
            return None
        shape = [batch_size if dim.is_batch else dim.size for dim in self.out.dims]
        return tf.zeros(shape, self.out.dtype)

    def step(self, sources: Sequence[Data], state: Any, *, train: bool, i: Any,
             refs: Mapping[str, Data] | None = None) -> tuple[Data, Any]:
        """The sum over the steps so far, this one included (also the new state)."""
        x = self.input_data(sources)
        total = state + self._summands(x)
        return self.out.with_tensor(total, like=x), total
