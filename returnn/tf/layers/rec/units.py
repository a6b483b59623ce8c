"""Recurrent units the ``rec`` layer runs over whole sequences, selected by the config's ``unit``.

Config: ``{"class": "rec", "unit": "nativelstm", "n_out": 512, "direction": -1, "from": "data"}``

Units: nativelstm / lstm / nativelstm2 (fused native op, the default), lstmblock (BlockLSTM),
standardlstm (TF loop), cudnnlstm (GPU only), gru, rnn. All are time-major: ``unit(x [T, B, n_in],
seq_lens [B], direction=1|-1, initial_state=None) -> (y [T, B, n_out], final_state)``, with y zero on
padded frames and the final state taken at each sequence's last valid frame.
"""

from __future__ import annotations

import inspect

import tensorflow as tf

from returnn.errors import LayerConfigError
from returnn.tf.layers.rec import lstm_units, simple_units
from returnn.tf.layers.rec.unit_base import UNITS, ParamInit, RecUnit, State, initial_value

__all__ = ["UNITS", "RecUnit", "State", "make_unit", "initial_value", "lstm_units", "simple_units"]


def _check_unit_opts(cls: type[RecUnit], unit: str, name: str, unit_opts: dict) -> None:
    """Reject ``unit_opts`` keys the unit does not take, naming the ones it does."""
    common = set(inspect.signature(RecUnit.__init__).parameters)
    own = [p for p in inspect.signature(cls.__init__).parameters if p not in common and p != "kwargs"]
    extra = sorted(set(unit_opts) - set(own))
    if extra:
        raise LayerConfigError(
            f"layer '{name}' (class \"rec\"): \"unit_opts\": unit {unit!r} does not take {', '.join(extra)}; "
            f"it takes: {', '.join(own) or 'no options'}")


def make_unit(unit: str, *, n_in: int, n_out: int, name: str = "rec", param_init: ParamInit = "glorot_uniform",
              bias_init: ParamInit = 0.0, dtype: tf.DType = tf.float32, seed: int | None = None,
              unit_opts: dict | None = None) -> RecUnit:
    """Create the unit registered as ``unit`` (case-insensitive); unknown names list the known ones."""
    key = unit.lower() if isinstance(unit, str) else unit
    if key not in UNITS:
        raise LayerConfigError(
            f"layer '{name}' (class \"rec\"): \"unit\": unknown unit {unit!r}; known: {', '.join(sorted(UNITS))}")
    cls = UNITS[key]
    unit_opts = dict(unit_opts or {})
    _check_unit_opts(cls, key, name, unit_opts)
    return cls(n_in=n_in, n_out=n_out, name=name, param_init=param_init, bias_init=bias_init, dtype=dtype, seed=seed,
               **unit_opts)
