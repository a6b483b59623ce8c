"""Layers on a beam search's hypotheses: ``decide`` (the best one per sequence), ``choice_get_beam_scores`` and
``choice_get_src_beams`` (a searching choice's scores and back-pointers at each step)."""

from __future__ import annotations

from typing import Any, Mapping, Sequence

import tensorflow as tf

from returnn.tensor.data import Data
from returnn.tf.layers.base import LayerBase, LayerContext, LayerOpts, register_layer


@register_layer("decide")
class DecideLayer(LayerBase):
    """The best hypothesis of each sequence of a search: [T, B*beam] -> [T, B] (with its length).

    Config: ``{"class": "decide", "from": "output"}`` on a rec layer whose choice searched; the hypothesis with
    the best beam score wins (divided by its length with ``length_normalization``). Outside a search (the
    input has no beam) it passes its input on.
    """

    example = {"from": "data"}

    class Opts(LayerOpts):
        length_normalization: bool = False

    @classmethod
    def out_template(cls, ctx: LayerContext, opts: Opts) -> Data:
        if len(ctx.sources) != 1:
            raise ctx.error(f'"from": expected one layer (the searched hypotheses), got {len(ctx.sources)}')
        src = ctx.sources[0]
        beam = src.beam
        if beam is None:
            return src.copy_template(ctx.name)
        return src.copy_template(ctx.name).with_dims([beam.base if dim is beam else dim for dim in src.dims])

    def __init__(self, ctx: LayerContext, opts: Opts):
        super().__init__(ctx)
        self.opts = opts

    def __call__(self, sources: Sequence[Data], *, train: bool) -> Data:
        src = sources[0]
        beam = src.beam
        if beam is None:
            return self.out.with_tensor(src.tensor, like=src)
        if src.beam_scores is None:
            raise self.ctx.error(f"input {src.describe()} carries no beam scores: decide reads the output of a rec "
                                 "layer whose choice searched (directly, no layer in between)")
        k = beam.beam_size
        scores = tf.reshape(src.beam_scores, [-1, k])  # [B, K]
        if self.opts.length_normalization and src.seq_lens is not None:
            scores = scores / tf.cast(tf.maximum(tf.reshape(src.seq_lens, [-1, k]), 1), scores.dtype)
        best = tf.argmax(scores, axis=1, output_type=tf.int32)
        rows = tf.range(tf.shape(best)[0]) * k + best  # [B]
        axis = src.batch_dim_axis
        sizes = {dim: tf.gather(size, rows) for dim, size in src.dyn_sizes.items()}
        best_scores = tf.gather(src.beam_scores, rows)
        return self.out.with_tensor(tf.gather(src.tensor, rows, axis=axis), dyn_sizes=sizes).replace(
            beam_scores=best_scores)


class _ChoiceSubLayer(LayerBase):
    """A sublayer of a searching choice at this step, [B*beam]."""

    sub = ""
    example = None

    @classmethod
    def sources_read(cls, layer_dict: Mapping[str, Any], sources: Sequence[str], *,
                     search: bool = False) -> list[str]:
        return [f"{name}/{cls.sub}" for name in sources]

    @classmethod
    def out_template(cls, ctx: LayerContext, opts: LayerOpts) -> Data:
        if len(ctx.sources) != 1:
            raise ctx.error(f'"from": expected one searching choice layer, got {len(ctx.sources)} layers')
        return ctx.sources[0].copy_template(ctx.name)

    def __call__(self, sources: Sequence[Data], *, train: bool) -> Data:
        return self.out.with_tensor(sources[0].tensor)


@register_layer("choice_get_beam_scores")
class ChoiceGetBeamScoresLayer(_ChoiceSubLayer):
    """The beam scores [B*beam] of the hypotheses a searching choice kept at this step (what it ranks by).

    Config: ``{"class": "choice_get_beam_scores", "from": "output"}`` inside the rec unit of the choice.
    """

    sub = "beam_scores"


@register_layer("choice_get_src_beams")
class ChoiceGetSrcBeamsLayer(_ChoiceSubLayer):
    """The back-pointers [B*beam] of a searching choice at this step: the hypothesis (0 .. beam_size - 1 within
    its sequence) each kept one continues.

    Config: ``{"class": "choice_get_src_beams", "from": "output"}`` inside the rec unit of the choice.
    """

    sub = "src_beams"
