"""The ``choice`` layer: the label of each step of a rec loop. With a target (training, eval, forward) it
is the target's label (teacher forcing); beam search over its input's scores is not implemented yet."""

from __future__ import annotations

from typing import Any, Callable, Literal, Mapping, Sequence

from returnn.tensor.data import Data
from returnn.tensor.dim import Dim, batch_dim, feature_dim
from returnn.tf.layers.base import LayerBase, LayerContext, LayerOpts, register_layer

_EXAMPLE_TIME = Dim(None, "choice-example:time")  # frames and labels aligned, so a loop over either fits both
_SEARCH_MISSING = ("beam search is not supported yet (it is the next step of the choice layer); with a \"target\" "
                   "the layer outputs the target's labels in training, eval and forward")


@register_layer("choice")
class ChoiceLayer(LayerBase):
    """The label chosen at this step: the ``target``'s label (its frame inside a rec loop).

    Config: ``{"class": "choice", "from": "prob", "target": "classes", "beam_size": 8}`` inside a rec
    ``unit``, typically read back as ``prev:output`` (the previous label) by the decoder.
    The output is the target's template (sparse, the target's vocab; one frame in a loop). The
    search options (``beam_size``, ``input_type``, ``length_normalization``, ...) are checked, for beam
    search; a choice that would have to search (``"search": True``, or no ``target``) is an error for now.
    """

    example = {"from": "prob", "target": "classes", "beam_size": 4}
    example_extra = {"prob": {"class": "softmax", "from": "data", "n_out": 4}}
    example_extern_data = {
        "data": {"dims": [batch_dim, _EXAMPLE_TIME, feature_dim(5, "choice-example:feature")]},
        "classes": {"dims": [batch_dim, _EXAMPLE_TIME], "sparse_dim": feature_dim(4, "choice-example:vocab")}}

    class Opts(LayerOpts):
        beam_size: int
        keep_beams: bool = False
        search: bool | None = None  # None: search exactly when there is no target
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
    def sources_read(cls, layer_dict: Mapping[str, Any], sources: Sequence[str]) -> list[str]:
        """With a target and no search, the scores ("from") are not read: the output is the target."""
        searches = layer_dict.get("search") or layer_dict.get("target") is None
        return list(sources) if searches else []

    @classmethod
    def runs_on_sequences(cls, layer_dict: Mapping[str, Any]) -> bool:
        return cls.sources_read(layer_dict, ["scores"]) == []  # teacher forcing: each frame its target label

    @classmethod
    def out_template(cls, ctx: LayerContext, opts: Opts) -> Data:
        if opts.beam_size < 1:
            raise ctx.error(f'"beam_size": expected an int >= 1, got {opts.beam_size}')
        target = ctx.common.target
        if opts.search or target is None:
            why = '"search": True' if opts.search else 'no "target" (a choice without one must search)'
            raise ctx.error(f"{why}: {_SEARCH_MISSING}")
        if opts.scheduled_sampling or opts.cheating:
            raise ctx.error('"scheduled_sampling" / "cheating" mix search into training; not supported yet')
        labels = ctx.dependency(cls._target_ref(target))
        if opts.input_type != "regression" and labels.sparse_dim is None:
            raise ctx.error(f'"target" {target!r}: expected sparse labels, got {labels.describe()}')
        return labels.copy_template(ctx.name)

    @staticmethod
    def _target_ref(target: str) -> str:
        """The ref that gives the labels: ``data:KEY``, or the layer of ``layer:NAME``."""
        return target[len("layer:"):] if target.startswith("layer:") else f"data:{target}"

    def __init__(self, ctx: LayerContext, opts: Opts):
        super().__init__(ctx)
        self.opts = opts  # the search options, for the beam search to come
        self.ref = self._target_ref(ctx.common.target)

    def __call__(self, sources: Sequence[Data], *, train: bool, refs: Mapping[str, Data] | None = None) -> Data:
        labels = refs[self.ref]
        return self.out.with_tensor(labels.tensor, like=labels)
