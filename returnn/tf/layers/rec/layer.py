"""The ``rec`` layer: a recurrent unit string over whole sequences (forward or backward) or one frame per
step inside a rec loop; or a ``unit`` dict, a subnetwork run once per time step (see ``subnet``)."""

from __future__ import annotations

from typing import Any, Mapping, Sequence

from returnn.tensor.data import Data
from returnn.tensor.dim import Dim
from returnn.tf.layers.base import LayerContext, LayerOpts, get_layer_class, register_layer
from returnn.tf.layers.rec import initial_state as init_state
from returnn.tf.layers.rec.subnet import RecLoop, check_unit_dict, plan_loop
from returnn.tf.layers.rec.unit_layer import UnitLayerBase


@register_layer("rec")
class RecLayer(UnitLayerBase):
    """A recurrent unit (LSTM variants, GRU, vanilla RNN) over each sequence's valid frames, or a step-wise
    subnetwork.

    Config: ``{"class": "rec", "unit": "lstm", "from": "data", "n_out": 256, "direction": -1}``.
    ``unit``: nativelstm / lstm (default; the fused native op), nativelstm2, lstmblock, standardlstm,
    cudnnlstm (GPU), gru, rnn, or a TensorFlow cell name (BasicLSTM, LSTMBlockFused, GRU, BasicRNN, ...;
    case-insensitive); ``unit_opts`` go to the unit. ``direction`` -1 runs backwards in time.
    ``initial_state``: the unit's state before the first frame: "zeros" (default), "ones", a number, "var"
    (trained), a layer [B, n_out], or a dict per state part ({"c": ..., "h": ...}); see ``initial_state``.
    ``unroll`` (RETURNN's static unrolling up to ``max_seq_len``) is accepted and changes nothing: the
    units here loop over time as one op, with the same results.
    The output is time-major [T, B, n_out], zero on padded frames. Inside a rec loop, on an input
    without a time axis, the layer is a cell: [B, n_in] -> [B, n_out], one step per loop step, its state
    carried by the loop (zeros at the start). ``"<name>/last_state"`` is the state at each sequence's
    last valid frame (inside a loop: after this step), as ``get_last_hidden_state`` reads it.

    A ``unit`` dict (``{"class": "rec", "from": "x", "unit": {"s": {...}, "output": {...}}}``) is a net
    dict run once per time step: its layers see one frame and read ``data:source`` (this layer's input
    frame), ``data:KEY``, ``prev:NAME`` (``initial_output`` at step 0), ``base:NAME`` and ``:i``. The loop
    runs over the input's time axis, else the length of ``target`` / ``size_target``, else up to
    ``max_seq_len`` (a number or ``"max_len_from('base:enc') * 2"``) and each sequence's ``end`` layer
    (``include_eos``: whether the end step is part of the output). The output is the ``output`` sublayer
    stacked over time; sublayers with a loss or ``is_output_layer`` are readable as ``"name/sub"``.
    Params: ``W`` [in, gates * out], ``W_re`` [out, gates * out], ``b`` [gates * out], the same in and
    outside a loop; a unit dict's sublayers' params, named ``<name>/<sublayer>/W``.
    """

    example = {"from": "data", "unit": "standardlstm", "n_out": 3, "direction": -1}

    class Opts(LayerOpts):
        unit: str | dict = "nativelstm"
        n_out: int | None = None
        out_dim: Dim | None = None
        direction: int = 1
        unit_opts: dict | None = None
        forward_weights_init: str | float | None = None
        recurrent_weights_init: str | float | None = None
        bias_init: str | float = 0.0
        max_seq_len: int | str | None = None
        size_target: str | None = None
        include_eos: bool = False
        optimize_move_layers_out: bool | None = None
        initial_state: Any = None
        unroll: bool = False

    @classmethod
    def extra_refs(cls, layer_dict: Mapping[str, Any]) -> list[str]:
        """Layers ``initial_state`` reads (with a unit string)."""
        if isinstance(layer_dict.get("unit"), Mapping):
            return []
        return init_state.layer_names(layer_dict.get("initial_state"))

    @classmethod
    def reads_target_in_search(cls, layer_dict: Mapping[str, Any]) -> bool:
        """A unit dict takes its loop length from the target unless a choice in it searches."""
        unit = layer_dict.get("unit")
        return isinstance(unit, Mapping) and not any(
            isinstance(sub, Mapping) and sub.get("class") == "choice"
            and get_layer_class("choice").searches(sub, search=True) for sub in unit.values())

    @classmethod
    def nested_net_dicts(cls, layer_dict: Mapping[str, Any]) -> list[Mapping[str, Any]]:
        unit = layer_dict.get("unit")
        return [unit] if isinstance(unit, Mapping) else []

    @classmethod
    def out_template(cls, ctx: LayerContext, opts: Opts) -> Data:
        if isinstance(opts.unit, dict):
            check_unit_dict(ctx, opts.unit)
            optimize = opts.optimize_move_layers_out
            if optimize is None:
                optimize = ctx.option("optimize_move_layers_out", True)
            plan = plan_loop(ctx, opts.unit, size_target=opts.size_target, max_seq_len=opts.max_seq_len,
                             optimize=optimize)
            ctx.state["loop_plan"] = plan
            ctx.state["nested_networks"] = plan.networks()
            out = plan.stacked["output"].copy_template(ctx.name)
            cls._check_unit_dict_opts(ctx, opts, out)
            return out
        if opts.direction not in (1, -1):
            raise ctx.error(f'"direction": expected 1 or -1, got {opts.direction!r}')
        out = cls.unit_out_template(ctx, unit=opts.unit, unit_opts=opts.unit_opts, n_out=opts.n_out,
                                    out_dim=opts.out_dim, direction=opts.direction)
        cls.check_initial_state(ctx, opts.initial_state, out.dim)
        return out

    @staticmethod
    def _check_unit_dict_opts(ctx: LayerContext, opts: Opts, out: Data) -> None:
        """Options of a unit string that mean nothing for a unit dict are errors, ``n_out`` must match."""
        if opts.direction != 1:
            raise ctx.error(f'"direction": {opts.direction} with a "unit" dict: the loop runs forward; reverse the '
                            "input (or read it backwards inside the unit) instead")
        unused = [name for name in ("unit_opts", "forward_weights_init", "recurrent_weights_init", "initial_state")
                  if getattr(opts, name) is not None]
        if unused:
            raise ctx.error(f'{", ".join(map(repr, unused))}: options of a unit string; with a "unit" dict give them '
                            "to its sublayers")
        if opts.n_out is not None and out.dim != opts.n_out:
            raise ctx.error(f'"n_out" {opts.n_out} does not match the "output" sublayer {out.describe()}')

    @classmethod
    def sub_template(cls, ctx: LayerContext, sub: str) -> Data | None:
        plan = ctx.state.get("loop_plan")
        if plan is None:
            return super().sub_template(ctx, sub)
        return plan.stacked_template(ctx, sub)

    def __init__(self, ctx: LayerContext, opts: Opts):
        super().__init__(ctx)
        self.loop: RecLoop | None = None
        if isinstance(opts.unit, dict):
            self.loop = RecLoop(self, ctx, ctx.state["loop_plan"], include_eos=opts.include_eos)
            self.params.update(self.loop.params())
            self.steps = False
            return
        self.make_layer_unit(opts.unit, unit_opts=opts.unit_opts, direction=opts.direction,
                             weight_inits=[opts.forward_weights_init, opts.recurrent_weights_init],
                             bias_init=opts.bias_init, initial_state=opts.initial_state)

    def nested_loss_entries(self) -> dict[str, Any]:
        return self.loop.loss_entries() if self.loop is not None else {}

    def call_with_subs(self, sources: Sequence[Data], *, train: bool,
                       refs: Mapping[str, Data] | None = None) -> tuple[Data, dict[str, Data]]:
        if self.loop is None:
            return super().call_with_subs(sources, train=train, refs=refs)
        stacked = self.loop.run(sources, refs or {}, train=train,
                                input_data=self.input_data(sources) if sources else None)
        out = stacked["output"]
        return self.out.with_tensor(out.tensor, like=out).replace(logits=out.logits, beam_scores=out.beam_scores), stacked

    def __call__(self, sources: Sequence[Data], *, train: bool, refs: Mapping[str, Data] | None = None) -> Data:
        if self.loop is not None:
            return self.call_with_subs(sources, train=train, refs=refs)[0]
        return super().__call__(sources, train=train, refs=refs)
