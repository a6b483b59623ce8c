"""The ``choice`` layer: the label of each step of a rec loop. With a target and no search (training, eval,
forward) it is the target's label (teacher forcing); in a search network it keeps the best ``beam_size``
hypotheses by their accumulated scores (see ``beam``)."""

from __future__ import annotations

from typing import Any, Callable, Literal, Mapping, Sequence

import tensorflow as tf

from returnn.tensor.data import Data
from returnn.tensor.dim import BeamBatchDim, Dim, batch_dim, feature_dim
from returnn.tf.layers.base import LayerBase, LayerContext, LayerOpts, register_layer
from returnn.tf.layers.rec.beam import BeamState, initial_beam_state, log_scores, select_in_beam

_EXAMPLE_TIME = Dim(None, "choice-example:time")  # frames and labels aligned, so a loop over either fits both
# options RETURNN has that this choice does not implement: (option, the value meaning "off")
_UNSUPPORTED = (("cheating", False), ("scheduled_sampling", False), ("explicit_search_sources", None),
                ("custom_score_combine", None), ("keep_beams", False))
SEARCH_SUBS = ("src_beams", "beam_scores")  # sublayers of a searching choice: "output/src_beams", ...


@register_layer("choice")
class ChoiceLayer(LayerBase):
    """The label chosen at this step: the ``target``'s label (teacher forcing), or in a search the labels of
    the ``beam_size`` best hypotheses.

    Config: ``{"class": "choice", "from": "prob", "target": "classes", "beam_size": 8}`` inside a rec
    ``unit``, typically read back as ``prev:output`` (the previous label) by the decoder.
    Without search the output is the target's template (sparse, the target's vocab; one frame in a loop).
    In a search network (task search, ``forward_use_search``) or with ``"search": True``, the loop's batch is
    each sequence ``beam_size`` times (``B*beam`` in templates) and the choice keeps the hypotheses with the
    best accumulated score: ``input_type`` (prob, log_prob, logits) times ``prob_scale`` added to
    ``base_beam_score_scale`` times the score so far; ranked by score / length ** exponent with
    ``length_normalization``; ``random_sample_scale`` adds that much Gumbel noise to the ranking (sampling).
    ``"<name>/src_beams"`` (the hypothesis each came from) and ``"<name>/beam_scores"`` are its sublayers.
    """

    example = {"from": "prob", "target": "classes", "beam_size": 4}
    example_extra = {"prob": {"class": "softmax", "from": "data", "n_out": 4}}
    example_extern_data = {
        "data": {"dims": [batch_dim, _EXAMPLE_TIME, feature_dim(5, "choice-example:feature")]},
        "classes": {"dims": [batch_dim, _EXAMPLE_TIME], "sparse_dim": feature_dim(4, "choice-example:vocab")}}

    class Opts(LayerOpts):
        beam_size: int
        keep_beams: bool = False
        search: bool | None = None  # None: search in a search network (and always without a target)
        add_to_beam_scores: bool | None = None
        input_type: Literal["prob", "log_prob", "logits", "regression"] = "prob"
        prob_scale: float = 1.0
        base_beam_score_scale: float = 1.0
        random_sample_scale: float = 0.0
        length_normalization: bool = True
        length_normalization_exponent: float = 1.0
        custom_score_combine: Callable | None = None
        source_beam_sizes: Sequence[int] | None = None
        scheduled_sampling: dict | bool = False
        cheating: bool | Literal["exclusive"] = False
        explicit_search_sources: Sequence[str] | None = None

    @classmethod
    def searches(cls, layer_dict: Mapping[str, Any], *, search: bool) -> bool:
        explicit = layer_dict.get("search")
        if explicit is not None:
            return bool(explicit)
        return search or layer_dict.get("target") is None

    @classmethod
    def sources_read(cls, layer_dict: Mapping[str, Any], sources: Sequence[str], *,
                     search: bool = False) -> list[str]:
        """Searching, the scores ("from"); else (teacher forcing) none: the output is the target."""
        return list(sources) if cls.searches(layer_dict, search=search) else []

    @classmethod
    def reads_target_in_search(cls, layer_dict: Mapping[str, Any]) -> bool:
        return not cls.searches(layer_dict, search=True)

    @classmethod
    def runs_on_sequences(cls, layer_dict: Mapping[str, Any]) -> bool:
        return not cls.searches(layer_dict, search=False)  # teacher forcing: each frame its target label

    @classmethod
    def out_template(cls, ctx: LayerContext, opts: Opts) -> Data:
        if opts.beam_size < 1:
            raise ctx.error(f'"beam_size": expected an int >= 1, got {opts.beam_size}')
        if opts.scheduled_sampling:
            raise ctx.error('"scheduled_sampling" (search mixed into training) is not supported')
        target = ctx.common.target
        if cls.searches({"search": opts.search, "target": target}, search=ctx.option("search", False)):
            return cls._search_template(ctx, opts)
        labels = ctx.dependency(cls._target_ref(target))
        if opts.input_type != "regression" and labels.sparse_dim is None:
            raise ctx.error(f'"target" {target!r}: expected sparse labels, got {labels.describe()}')
        return labels.copy_template(ctx.name)

    @classmethod
    def _search_template(cls, ctx: LayerContext, opts: Opts) -> Data:
        """Searching: [B*beam] labels over the vocab of the scores (the input's feature dim)."""
        for name, off in _UNSUPPORTED:
            if getattr(opts, name) != off:
                raise ctx.error(f'"{name}": not supported in a search (supported: beam_size, input_type, prob_scale, '
                                "base_beam_score_scale, length_normalization(_exponent), random_sample_scale)")
        if opts.add_to_beam_scores is False or opts.input_type == "regression":
            raise ctx.error('"add_to_beam_scores": False / "input_type": "regression": a search needs scores to add')
        if len(ctx.sources) != 1 or (opts.source_beam_sizes is not None and len(opts.source_beam_sizes) != 1):
            raise ctx.error(f"a search over {len(ctx.sources)} sources (source_beam_sizes) is not supported; "
                            "give one \"from\" with the label scores")
        beam = ctx.batch_dim
        if not ctx.inside_loop or not isinstance(beam, BeamBatchDim) or beam.choice != ctx.name:
            raise ctx.error("searches outside a rec loop's unit (or beside another searching choice in it); "
                            'beam search runs in a rec layer\'s "unit", one searching choice per unit')
        scores = ctx.sources[0]
        if scores.sparse or scores.feature_dim is None or len(scores.dims) != 2:
            raise ctx.error(f'"from": expected label scores [B, vocab] per step, got {scores.describe()}')
        return Data(ctx.name, (beam,), dtype="int32", sparse_dim=scores.feature_dim)

    @classmethod
    def sub_template(cls, ctx: LayerContext, sub: str) -> Data | None:
        if sub not in SEARCH_SUBS:
            return None
        if not isinstance(ctx.out.dims[0], BeamBatchDim):
            raise ctx.error(f"{sub!r} exists only while the choice searches (task search, forward_use_search, or "
                            '"search": True); here it gives the target\'s labels')
        dtype = "int32" if sub == "src_beams" else "float32"
        return Data(f"{ctx.name}/{sub}", ctx.out.dims, dtype=dtype, time_dim=None, feature_dim=None)

    @staticmethod
    def _target_ref(target: str | None) -> str:
        """The ref that gives the labels: ``data:KEY``, or the layer of ``layer:NAME``."""
        if target is None:
            raise AssertionError("a choice without target always searches")
        return target[len("layer:"):] if target.startswith("layer:") else f"data:{target}"

    def __init__(self, ctx: LayerContext, opts: Opts):
        super().__init__(ctx)
        self.opts = opts
        self.beam: BeamBatchDim | None = ctx.out.dims[0] if isinstance(ctx.out.dims[0], BeamBatchDim) else None
        self.ref = None if self.beam is not None else self._target_ref(ctx.common.target)

    def __call__(self, sources: Sequence[Data], *, train: bool, refs: Mapping[str, Data] | None = None) -> Data:
        labels = refs[self.ref]
        return self.out.with_tensor(labels.tensor, like=labels)

    def initial_state(self, batch_size: Any) -> BeamState | None:
        return None if self.beam is None else initial_beam_state(batch_size, self.beam.beam_size)

    def step_with_subs(self, sources: Sequence[Data], state: BeamState, *, train: bool, i: Any,
                       refs: Mapping[str, Data] | None = None) -> tuple[Data, dict[str, Data], BeamState]:
        opts = self.opts
        scores = log_scores(sources[0], opts.input_type) * opts.prob_scale
        new_state = select_in_beam(state, scores, beam_size=self.beam.beam_size,
                                   base_scale=opts.base_beam_score_scale,
                                   length_exponent=opts.length_normalization_exponent if opts.length_normalization
                                   else None, noise_scale=opts.random_sample_scale)
        subs = {"src_beams": self.sub_template(self.ctx, "src_beams").with_tensor(new_state.src_beams),
                "beam_scores": self.sub_template(self.ctx, "beam_scores").with_tensor(new_state.ranking)}
        return self.out.with_tensor(new_state.labels), subs, new_state
