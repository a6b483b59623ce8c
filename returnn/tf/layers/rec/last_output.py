"""``rec_last_output``: a sublayer of a rec unit dict at each sequence's last step."""

from __future__ import annotations

from typing import Mapping, Sequence

import tensorflow as tf

from returnn.tensor.align import aligned_tensor
from returnn.tensor.data import Data
from returnn.tf.layers.base import LayerBase, LayerContext, LayerOpts, register_layer
from returnn.tf.layers.rec.loop_net import frame_template


@register_layer("rec_last_output")
class RecLastOutputLayer(LayerBase):
    """The value of sublayer ``sub_layer_name`` of the rec layer ``rec_layer`` at each sequence's last step.

    Config: ``{"class": "rec_last_output", "rec_layer": "dec", "sub_layer_name": "s"}`` gives [B, ...] (the
    frame template of ``dec/s``); the sublayer must be built (``is_output_layer`` or read by another one).
    Params: none.
    """

    default_from = "none"
    example = {"rec_layer": "dec", "sub_layer_name": "s"}
    example_extra = {"dec": {"class": "rec", "from": "data", "unit": {
        "s": {"class": "linear", "from": ["prev:s", "data:source"], "n_out": 3, "activation": "tanh",
              "is_output_layer": True},
        "output": {"class": "copy", "from": "s"}}}}

    class Opts(LayerOpts):
        rec_layer: str
        sub_layer_name: str

    @classmethod
    def out_template(cls, ctx: LayerContext, opts: Opts) -> Data:
        stacked = ctx.dependency(cls._ref(opts))
        if stacked.time_dim is None:
            raise ctx.error(f'"sub_layer_name": {cls._ref(opts)!r} has no time axis ({stacked.describe()})')
        return frame_template(stacked).copy_template(ctx.name)

    @staticmethod
    def _ref(opts: Opts) -> str:
        return f"{opts.rec_layer}/{opts.sub_layer_name}"

    def __init__(self, ctx: LayerContext, opts: Opts):
        super().__init__(ctx)
        self.ref = self._ref(opts)

    def __call__(self, sources: Sequence[Data], *, train: bool, refs: Mapping[str, Data] | None = None) -> Data:
        stacked = refs[self.ref].copy_as_batch_major()
        seq = stacked.copy_move_axis(stacked.time_dim_axis, 1)
        last = tf.maximum(seq.get_dyn_size(seq.time_dim) - 1, 0)
        frames = frame_template(seq).with_tensor(tf.gather(seq.tensor, last, axis=1, batch_dims=1))
        return self.out.with_tensor(aligned_tensor(frames, self.out.dims))
