"""Recurrent units the ``rec`` and ``rnn_cell`` layers run, selected by the config's ``unit``.

Config: ``{"class": "rec", "unit": "nativelstm", "n_out": 512, "direction": -1, "from": "data"}``

Units: nativelstm / lstm / nativelstm2 (fused native op, the default), lstmblock (BlockLSTM),
standardlstm (TF loop), cudnnlstm (GPU only), gru, rnn. TensorFlow cell names as RETURNN accepts them
(case-insensitive, a "Cell" suffix dropped) name the same units: BasicLSTM -> standardlstm,
LSTMBlockFused -> lstmblock, BasicRNN -> rnn, GRUBlock -> gru, NativeLstm2 -> nativelstm2.
All are time-major: ``unit(x [T, B, n_in], seq_lens [B], direction=1|-1, initial_state=None) ->
(y [T, B, n_out], final_state)``, with y zero on padded frames and the final state taken at each
sequence's last valid frame; ``unit.step(x_t [B, n_in], state) -> (y_t [B, n_out], new state)`` runs
one frame.
"""

from __future__ import annotations

import inspect

import tensorflow as tf

from returnn.errors import LayerConfigError
from returnn.tf.layers.opts import did_you_mean
from returnn.tf.layers.rec import lstm_units, simple_units
from returnn.tf.layers.rec.unit_base import UNITS, ParamInit, RecUnit, State, initial_value

__all__ = ["UNITS", "TF_CELL_NAMES", "RecUnit", "State", "make_unit", "unit_key", "unit_problem", "known_unit_names",
           "initial_value", "lstm_units", "simple_units"]

# TensorFlow cell names (lower case, without "cell") that are not unit names themselves.
TF_CELL_NAMES = {"basiclstm": "standardlstm", "lstmblockfused": "lstmblock", "basicrnn": "rnn", "grublock": "gru"}


def unit_key(unit: str) -> str | None:
    """The registered unit a ``unit`` string names (case-insensitive; a TF cell name too), else None."""
    if not isinstance(unit, str):
        return None
    key = unit.lower()
    if key.endswith("cell") and key != "cell":
        key = key[: -len("cell")]
    key = TF_CELL_NAMES.get(key, key)
    return key if key in UNITS else None


def known_unit_names() -> list[str]:
    """Every accepted ``unit`` string (lower case), for messages."""
    return sorted(set(UNITS) | set(TF_CELL_NAMES))


def _unit_opts_problem(cls: type[RecUnit], unit: str, unit_opts: dict) -> str | None:
    """Why ``unit_opts`` does not fit the unit (keys it does not take), or None."""
    common = set(inspect.signature(RecUnit.__init__).parameters)
    own = [p for p in inspect.signature(cls.__init__).parameters if p not in common and p != "kwargs"]
    extra = sorted(set(unit_opts) - set(own))
    if extra:
        takes = ", ".join(own) or "no options"
        return f"\"unit_opts\": unit {unit!r} does not take {', '.join(extra)}; it takes: {takes}"
    return None


def unit_problem(unit: str, unit_opts: dict | None = None) -> str | None:
    """Why ``make_unit(unit, unit_opts=...)`` would fail (a message naming the option), or None; layers
    check this in ``out_template`` so the message names them."""
    key = unit_key(unit)
    if key is None:
        known = known_unit_names()
        hint = did_you_mean(unit.lower(), known) if isinstance(unit, str) else ""
        return f"\"unit\": unknown unit {unit!r}{hint}; known: {', '.join(known)}"
    unavailable = UNITS[key].unavailable()
    if unavailable:
        return f'"unit": {unavailable}'
    return _unit_opts_problem(UNITS[key], key, dict(unit_opts or {}))


def make_unit(unit: str, *, n_in: int, n_out: int, name: str = "rec", param_init: ParamInit = "glorot_uniform",
              bias_init: ParamInit = 0.0, dtype: tf.DType = tf.float32, seed: int | None = None,
              unit_opts: dict | None = None) -> RecUnit:
    """Create the unit ``unit`` names (case-insensitive, TF cell names too); unknown names list the known ones."""
    problem = unit_problem(unit, unit_opts)
    if problem:
        raise LayerConfigError(f"layer '{name}' (class \"rec\"): {problem}")
    return UNITS[unit_key(unit)](n_in=n_in, n_out=n_out, name=name, param_init=param_init, bias_init=bias_init,
                                 dtype=dtype, seed=seed, **dict(unit_opts or {}))
