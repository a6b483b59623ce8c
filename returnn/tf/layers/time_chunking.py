"""``time_chunking`` / ``time_unchunking``: overlapping windows of each sequence as extra batch entries, and back.

Windows start every ``chunk_step`` frames and are ``chunk_size`` frames long; a batch padded to T frames gets
``n = max(T - chunk_size + chunk_step - 1, 0) // chunk_step + 1`` windows per sequence (RETURNN's count), so the
chunked batch has ``n * B`` entries (entry ``k * B + b`` is window k of sequence b), each with its own length
(frames past the end of its sequence are padding; a window past the end is empty). Unchunking puts every frame
back at its place, averaging the windows that cover it.
"""

from __future__ import annotations

from typing import Any, Mapping, Sequence

import tensorflow as tf

from returnn.tensor.data import Data
from returnn.tensor.dim import BATCH, SPATIAL, Dim
from returnn.tf.layers.base import LayerBase, LayerContext, LayerOpts, register_layer
from returnn.tf.layers.opts import layer_ref
from returnn.tf.layers.seq_ops import expand_to_rank, replace_dim
from returnn.tf.net_graph import parse_from


def window_starts(time: Any, chunk_size: int, chunk_step: int) -> Any:
    """[n] start frames of the windows over ``time`` frames."""
    n_chunks = tf.maximum(time - chunk_size + chunk_step - 1, 0) // chunk_step + 1
    return tf.range(n_chunks) * chunk_step


def _time_major_input(ctx: LayerContext) -> Data:
    """The input as [T, B, F], checked."""
    src = ctx.input_template()
    if src.time_dim is None or src.batch_dim_axis is None or src.batch_ndim != 3 or src.feature_dim is None:
        raise ctx.error(f"needs input [B, T, F] (a time, a batch and a feature axis), got {src.describe()}")
    return src.copy_as_time_major().copy_with_feature_last()


@register_layer("time_chunking")
class TimeChunkingLayer(LayerBase):
    """Each sequence cut into overlapping windows, which become batch entries (see the module docstring).

    Config: ``{"class": "time_chunking", "from": "data", "chunk_size": 22, "chunk_step": 11}``
    The output is time-major [chunk_size, n * B, F], with a batch dim of its own; ``time_unchunking`` with ``"chunking_layer"`` undoes it.
    Params: none.
    """

    example = {"from": "data", "chunk_size": 3, "chunk_step": 2}

    class Opts(LayerOpts):
        chunk_size: int
        chunk_step: int

    @classmethod
    def out_template(cls, ctx: LayerContext, opts: Opts) -> Data:
        for key in ("chunk_size", "chunk_step"):
            value = getattr(opts, key)
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise ctx.error(f'"{key}": expected an int >= 1, got {value!r}')
        src = _time_major_input(ctx)
        ctx.state["time_dim"] = src.time_dim
        chunked = replace_dim(src, 0, Dim(None, f"{ctx.name}:chunk", kind=SPATIAL))
        return replace_dim(chunked, 1, Dim(None, f"{ctx.name}:batch", kind=BATCH))  # n windows per sequence

    def __init__(self, ctx: LayerContext, opts: Opts):
        super().__init__(ctx)
        self.chunk_size, self.chunk_step = opts.chunk_size, opts.chunk_step

    def __call__(self, sources: Sequence[Data], *, train: bool) -> Data:
        x = self.input_data(sources).copy_as_time_major().copy_with_feature_last()
        lens = x.get_dyn_size(x.time_dim)
        time, size = tf.shape(x.tensor)[0], self.chunk_size
        starts = window_starts(time, size, self.chunk_step)
        padded = tf.pad(x.tensor, [[0, starts[-1] + size - time], [0, 0], [0, 0]])
        frames = tf.gather(padded, starts[:, None] + tf.range(size)[None, :])  # [n, size, B, F]
        chunk_lens = tf.clip_by_value(lens[None, :] - starts[:, None], 0, size)  # [n, B]
        mask = tf.sequence_mask(chunk_lens, size)  # [n, B, size]
        frames = tf.where(expand_to_rank(tf.transpose(mask, [0, 2, 1]), 4), frames, tf.zeros_like(frames))
        y = tf.reshape(tf.transpose(frames, [1, 0, 2, 3]), [size, -1, tf.shape(x.tensor)[2]])
        # the input's time sizes ride along for time_unchunking (not one of this output's dims)
        return self.out.replace(tensor=y, dyn_sizes={self.out.time_dim: tf.reshape(chunk_lens, [-1]),
                                                     self.ctx.state["time_dim"]: lens})


@register_layer("time_unchunking")
class TimeUnchunkingLayer(LayerBase):
    """Windows of ``time_chunking`` put back into whole sequences; frames covered by several windows average them.

    Config: ``{"class": "time_unchunking", "from": "blstm", "chunking_layer": "chunks"}``
    The output has the chunking layer's input's time and batch (time-major) with this layer's input features.
    Params: none.
    """

    example = {"from": "chunks", "chunking_layer": "chunks"}
    example_extra = {"chunks": {"class": "time_chunking", "from": "data", "chunk_size": 3, "chunk_step": 2}}

    class Opts(LayerOpts):
        chunking_layer: str = layer_ref()

    @classmethod
    def out_template(cls, ctx: LayerContext, opts: Opts) -> Data:
        layer = ctx.network.net_dict.get(opts.chunking_layer)
        if not isinstance(layer, Mapping) or layer.get("class") != "time_chunking":
            raise ctx.error(f'"chunking_layer": expected the name of a "time_chunking" layer, got '
                            f"{opts.chunking_layer!r}")
        chunks = ctx.dependency(opts.chunking_layer)
        src = _time_major_input(ctx)
        if src.time_dim is not chunks.time_dim or src.dims[1] is not chunks.dims[1]:
            raise ctx.error(f"needs the time axis of {opts.chunking_layer!r} ({chunks.describe()}), got "
                            f"{src.describe()}")
        source_ref = parse_from(layer.get("from", "data"), where=ctx.where())[0][0]
        original = ctx.network.dependency_template(source_ref, requested_by=opts.chunking_layer)
        original = original.copy_as_time_major()
        ctx.state["time_dim"] = original.time_dim
        ctx.state["chunk_layer"] = (opts.chunking_layer, layer["chunk_size"], layer["chunk_step"])
        return replace_dim(replace_dim(src, 0, original.time_dim), 1, original.dims[original.batch_dim_axis])

    def __init__(self, ctx: LayerContext, opts: Opts):
        super().__init__(ctx)
        self.chunking_layer, self.chunk_size, self.chunk_step = ctx.state["chunk_layer"]

    def __call__(self, sources: Sequence[Data], *, train: bool, refs: Mapping[str, Data] | None = None) -> Data:
        x = self.input_data(sources).copy_as_time_major().copy_with_feature_last()
        time_dim = self.ctx.state["time_dim"]
        lens = refs[self.chunking_layer].dyn_sizes[time_dim]  # [B]
        size, batch, feat = self.chunk_size, tf.shape(lens)[0], tf.shape(x.tensor)[2]
        time = tf.reduce_max(lens)  # batches are padded to their longest sequence
        starts = tf.range(tf.shape(x.tensor)[1] // batch) * self.chunk_step
        frames = tf.reshape(x.tensor, [size, -1, batch, feat])
        positions = starts[None, :] + tf.range(size)[:, None]  # [size, n]
        valid = tf.cast(positions[:, :, None] < lens[None, None, :], x.tensor.dtype)  # [size, n, B]
        span = tf.maximum(starts[-1] + size, time)
        total = tf.math.unsorted_segment_sum(frames * valid[..., None], positions, span)  # [span, B, F]
        count = tf.math.unsorted_segment_sum(valid, positions, span)  # [span, B]
        y = (total / tf.maximum(count, 1.0)[..., None])[:time]
        return self.out.with_tensor(y, dyn_sizes={time_dim: lens})
