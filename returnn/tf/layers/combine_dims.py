"""``combine_dims``: RETURNN's older name of merge_dims, with its ``"non_spatial"`` axes."""

from __future__ import annotations

from returnn.tensor.data import Data
from returnn.tf.layers.base import LayerContext, register_layer
from returnn.tf.layers.shape import MergeDimsLayer


@register_layer("combine_dims")
class CombineDimsLayer(MergeDimsLayer):
    """Several axes flattened into one, like merge_dims; ``"axes": "non_spatial"`` merges every static axis
    but batch and time.

    Config: ``{"class": "combine_dims", "from": "att", "axes": "non_spatial"}``: a gauss_window_attention frame
    [B, inner, F] becomes [B, inner * F] (as RETURNN's demo-tf-att-copy expects), a window [B, T, W, F] becomes
    [B, T, W * F]; on [B, T, F] it is F alone, i.e. no change. (RETURNN's axis parser reads ``"non_spatial"``
    as ``"F"``; merging a single axis would leave the attention frame [B, inner, F] as it is.)
    """

    example = {"from": "win", "axes": "non_spatial"}
    example_extra = {"win": {"class": "window", "from": "data", "window_size": 3}}

    @staticmethod
    def _merge_axes(ctx: LayerContext, data: Data, opts: MergeDimsLayer.Opts) -> list[int]:
        if isinstance(opts.axes, str) and opts.axes.lower() == "non_spatial":
            return [i for i, dim in enumerate(data.dims)
                    if not dim.is_batch and dim is not data.time_dim and dim.size is not None]
        return MergeDimsLayer._merge_axes(ctx, data, opts)
