"""``rnn_cell`` (a recurrent cell named as in TensorFlow) and ``get_last_hidden_state`` (the last state of
recurrent layers, read through their ``"<name>/last_state"`` sublayers)."""

from __future__ import annotations

from typing import Mapping, Sequence

import tensorflow as tf

from returnn.errors import LayerConfigError
from returnn.tensor.data import Data
from returnn.tensor.dim import Dim, feature_dim
from returnn.tf.layers.base import LayerBase, LayerContext, LayerOpts, register_layer
from returnn.tf.layers.rec.unit_layer import LAST_STATE, UnitLayerBase

COMBINE = ("concat", "add")


@register_layer("rnn_cell")
class RnnCellLayer(UnitLayerBase):
    """A recurrent cell (RETURNN's ``RnnCellLayer``): one frame per step inside a rec loop, whole sequences
    outside (then like ``rec``).

    Config: ``{"class": "rnn_cell", "unit": "LSTMBlock", "n_out": 10, "from": ["prev:out", "base:enc_last"]}``.
    ``unit``: a TensorFlow cell name, case-insensitive, "Cell" optional: LSTMBlock, LSTMBlockFused, BasicLSTM,
    StandardLSTM, LSTM, NativeLstm2, GRU, GRUBlock, BasicRNN, or any ``rec`` unit name. They run our units
    (BasicLSTM: standardlstm, LSTMBlockFused: lstmblock, BasicRNN: rnn, GRUBlock: gru, LSTM: nativelstm):
    same math, no TF forget bias of 1 and no TF GRU gate bias of 1 (biases start at 0).
    Inside a rec loop the input is one frame [B, n_in] and the output [B, n_out]; the loop carries the
    state (zeros at the start). ``"<name>/last_state"`` (and ``get_last_hidden_state``) reads the state:
    c and h concatenated for LSTMs, h otherwise.
    Params: ``W`` [in, gates * out], ``W_re`` [out, gates * out] (both ``weights_init``), ``b``
    [gates * out] (zeros); the names and shapes of ``rec`` with the same unit.
    """

    example = {"from": "data", "unit": "LSTMBlock", "n_out": 3}

    class Opts(LayerOpts):
        unit: str
        n_out: int | None = None
        out_dim: Dim | None = None
        unit_opts: dict | None = None
        weights_init: str | float | None = None

    @classmethod
    def out_template(cls, ctx: LayerContext, opts: Opts) -> Data:
        return cls.unit_out_template(ctx, unit=opts.unit, unit_opts=opts.unit_opts, n_out=opts.n_out,
                                     out_dim=opts.out_dim)

    def __init__(self, ctx: LayerContext, opts: Opts):
        super().__init__(ctx)
        self.make_layer_unit(opts.unit, unit_opts=opts.unit_opts, weight_inits=[opts.weights_init], bias_init=0.0)


@register_layer("get_last_hidden_state")
class GetLastHiddenStateLayer(LayerBase):
    """The last state of recurrent layers as [B, n_out]; several sources concatenated or added.

    Config: ``{"class": "get_last_hidden_state", "from": "lstm", "n_out": 2 * 512}`` (RETURNN's enc-dec demo,
    "lstm" a ``rec`` nativelstm2 layer with 512 units). Each source is a ``rec`` layer with a unit string
    or an ``rnn_cell``; ``key`` picks from its state: ``"*"`` (default; None alike) an LSTM's c and h
    concatenated, c first ([B, 2n]), a GRU's or RNN's h ([B, n]); ``"c"``, ``"h"``; ``"flat"`` (LSTMs: as
    ``"*"``). A source over whole sequences gives its state at each sequence's last valid frame (for
    ``direction`` -1: after its first frame); a source inside a rec loop, its state after this step.
    ``combine``: "concat" (default) or "add" (sizes must agree). Reads the sublayers
    ``"<source>/last_state"`` / ``"<source>/last_state/<key>"``.
    Params: none.
    """

    example = {"from": "lstm", "n_out": 6}
    example_extra = {"lstm": {"class": "rec", "unit": "nativelstm2", "n_out": 3, "from": "data"}}

    class Opts(LayerOpts):
        n_out: int | None = None
        out_dim: Dim | None = None
        combine: str = "concat"
        key: str | int | None = "*"

    @staticmethod
    def state_ref(source: str, key: str | int | None) -> str:
        """The sublayer holding ``source``'s last state under ``key``."""
        return f"{source}/{LAST_STATE}" if key in ("*", None) else f"{source}/{LAST_STATE}/{key}"

    @classmethod
    def out_template(cls, ctx: LayerContext, opts: Opts) -> Data:
        if opts.combine not in COMBINE:
            raise ctx.error(f'"combine": expected one of {", ".join(COMBINE)}, got {opts.combine!r}')
        if not ctx.source_names:
            raise ctx.error('needs "from": the recurrent layers whose last state it reads')
        states = []
        for source in ctx.source_names:
            try:
                states.append(ctx.dependency(cls.state_ref(source, opts.key)))
            except LayerConfigError as exc:
                raise ctx.error(f'"from": {source!r} has no last state with "key" {opts.key!r} (only "rec" with a '
                                f'unit string and "rnn_cell" have one): {exc}') from None
        sizes = [state.dim for state in states]
        if opts.combine == "add" and len(set(sizes)) > 1:
            raise ctx.error('"combine": "add" needs states of one size, got '
                            + ", ".join(f"{s} [B,{size}]" for s, size in zip(ctx.source_names, sizes)))
        size = sum(sizes) if opts.combine == "concat" else sizes[0]
        if opts.n_out is None and opts.out_dim is None:
            out_dim = feature_dim(size, f"{ctx.name}:hidden-out")
        else:
            out_dim = ctx.out_feature_dim(opts.n_out, opts.out_dim)
            if out_dim.size != size:
                parts = ", ".join(f"{s} [B,{n}]" for s, n in zip(ctx.source_names, sizes))
                raise ctx.error(f'"n_out" {out_dim.size} does not match the last state size {size} ({parts}; '
                                f'with "key" "*" an LSTM state is c and h concatenated: 2 * its n_out)')
        batch = states[0].dims[states[0].batch_dim_axis]
        return Data(ctx.name, (batch, out_dim), dtype=states[0].dtype)

    def __init__(self, ctx: LayerContext, opts: Opts):
        super().__init__(ctx)
        self.state_refs = [self.state_ref(source, opts.key) for source in ctx.source_names]
        self.combine = opts.combine

    def __call__(self, sources: Sequence[Data], *, train: bool, refs: Mapping[str, Data] | None = None) -> Data:
        states = [refs[ref].tensor for ref in self.state_refs]
        tensor = states[0] if len(states) == 1 else (
            tf.concat(states, axis=-1) if self.combine == "concat" else tf.add_n(states))
        return self.out.with_tensor(tensor)
