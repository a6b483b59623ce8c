"""The ``rec`` layer with a unit string: a recurrent unit over whole sequences (forward or backward), or
one frame per step inside a rec loop."""

from __future__ import annotations

from returnn.tensor.data import Data
from returnn.tensor.dim import Dim
from returnn.tf.layers.base import LayerContext, LayerOpts, register_layer
from returnn.tf.layers.rec.unit_layer import UnitLayerBase
from returnn.tf.layers.rec.units import UNITS


@register_layer("rec")
class RecLayer(UnitLayerBase):
    """A recurrent unit (LSTM variants, GRU, vanilla RNN) over each sequence's valid frames.

    Config: ``{"class": "rec", "unit": "lstm", "from": "data", "n_out": 256, "direction": -1}``.
    ``unit``: nativelstm / lstm (default; the fused native op), nativelstm2, lstmblock, standardlstm,
    cudnnlstm (GPU), gru, rnn, or a TensorFlow cell name (BasicLSTM, LSTMBlockFused, GRU, BasicRNN, ...;
    case-insensitive); ``unit_opts`` go to the unit. ``direction`` -1 runs backwards in time.
    The output is time-major [T, B, n_out], zero on padded frames. Inside a rec loop, on an input
    without a time axis, the layer is a cell: [B, n_in] -> [B, n_out], one step per loop step, its state
    carried by the loop (zeros at the start). ``"<name>/last_state"`` is the state at each sequence's
    last valid frame (inside a loop: after this step), as ``get_last_hidden_state`` reads it.
    Params: ``W`` [in, gates * out], ``W_re`` [out, gates * out], ``b`` [gates * out], the same in and
    outside a loop.
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

    @classmethod
    def out_template(cls, ctx: LayerContext, opts: Opts) -> Data:
        if isinstance(opts.unit, dict):
            raise ctx.error('"unit" as a dict (a step-wise subnetwork with "prev:") is not supported yet; '
                            f"use a unit string: {', '.join(sorted(UNITS))}")
        if opts.direction not in (1, -1):
            raise ctx.error(f'"direction": expected 1 or -1, got {opts.direction!r}')
        return cls.unit_out_template(ctx, unit=opts.unit, unit_opts=opts.unit_opts, n_out=opts.n_out,
                                     out_dim=opts.out_dim, direction=opts.direction)

    def __init__(self, ctx: LayerContext, opts: Opts):
        super().__init__(ctx)
        self.make_layer_unit(opts.unit, unit_opts=opts.unit_opts, direction=opts.direction,
                             weight_inits=[opts.forward_weights_init, opts.recurrent_weights_init],
                             bias_init=opts.bias_init)
