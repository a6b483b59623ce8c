"""Recurrent units the ``rec`` and ``rnn_cell`` layers run, selected by the config's ``unit``.

Config: ``{"class": "rec", "unit": "nativelstm", "n_out": 512, "direction": -1, "from": "data"}``

Units: nativelstm / lstm / lstmp / nativelstm2 / nativelstmlowmem (fused native op, the default), lstmblock
(BlockLSTM), standardlstm (TF loop), cudnnlstm (GPU only; lstmblock without a GPU, logged), cudnngru (gru,
logged), gru, rnn. TensorFlow cell names as RETURNN accepts them (case-insensitive, a "Cell" suffix dropped)
name the same units: BasicLSTM -> standardlstm, LSTMBlockFused -> lstmblock, BasicRNN -> rnn, GRUBlock(V2)
-> gru, NativeLstm2 -> nativelstm2. RETURNN cells with other math (RHN, ZoneoutLSTM, NAS, ...) are an error.
All are time-major: ``unit(x [T, B, n_in], seq_lens [B], direction=1|-1, initial_state=None) ->
(y [T, B, n_out], final_state)``, with y zero on padded frames and the final state taken at each
sequence's last valid frame; ``unit.step(x_t [B, n_in], state) -> (y_t [B, n_out], new state)`` runs
one frame.
"""

from __future__ import annotations

import inspect

import tensorflow as tf

from returnn.errors import LayerConfigError
from returnn.log import logger
from returnn.tf.layers.opts import did_you_mean
from returnn.tf.layers.rec import lstm_units, simple_units
from returnn.tf.layers.rec.unit_base import UNITS, ParamInit, RecUnit, State, initial_value

__all__ = ["UNITS", "TF_CELL_NAMES", "RecUnit", "State", "make_unit", "unit_key", "unit_problem", "known_unit_names",
           "initial_value", "lstm_units", "simple_units"]

# TensorFlow / RETURNN cell names (lower case, without "cell") that are not unit names themselves, with the unit
# of the same math and params. "lstmp" is RETURNN's name of its default LSTM; NativeLstmLowMem is the native LSTM
# computed with less memory.
TF_CELL_NAMES = {"basiclstm": "standardlstm", "lstmblockfused": "lstmblock", "basicrnn": "rnn", "grublock": "gru",
                 "grublockv2": "gru", "lstmp": "nativelstm", "nativelstmlowmem": "nativelstm"}

# GPU-only units and the unit used without a GPU (RETURNN's replacements). There is no cuDNN GRU here: "cudnngru"
# always runs "gru" (GRUBlock's math, which RETURNN uses on CPU).
GPU_FALLBACKS = {"cudnnlstm": "lstmblock", "cudnngru": "gru"}

# Cells RETURNN accepts (from TensorFlow or its own) with other math than any unit here: named in the error.
NOT_IMPLEMENTED = ("layernormbasiclstm", "nas", "ugrnn", "intersectionrnn", "phasedlstm", "glstm", "gridlstm",
                   "timefreqlstm", "coupledinputforgetgatelstm", "rhn", "blocksparselstm",
                   "blocksparsemultiplicativemultisteplstm", "layernormvariantslstm", "zoneoutlstm",
                   "twodnativelstm", "conv1dlstm", "conv2dlstm", "conv3dlstm", "multirnn")

_fallbacks_logged: set[str] = set()


def _gpu_fallback(key: str) -> str:
    """``key``, or the unit that replaces a GPU-only unit that cannot run here (logged once per name)."""
    if key not in GPU_FALLBACKS or (key in UNITS and not UNITS[key].unavailable()):
        return key
    other = GPU_FALLBACKS[key]
    if key not in _fallbacks_logged:
        _fallbacks_logged.add(key)
        why = "is for GPU only and no GPU is visible" if key in UNITS else "has no implementation here"
        logger.warning("rec unit %r %s; using %r instead (same parameters)", key, why, other)
    return other


def unit_key(unit: str) -> str | None:
    """The registered unit a ``unit`` string names (case-insensitive; a TF cell name too), else None."""
    if not isinstance(unit, str):
        return None
    key = unit.lower()
    if key.endswith("cell") and key != "cell":
        key = key[: -len("cell")]
    key = _gpu_fallback(TF_CELL_NAMES.get(key, key))
    return key if key in UNITS else None


def known_unit_names() -> list[str]:
    """Every accepted ``unit`` string (lower case), for messages."""
    return sorted(set(UNITS) | set(TF_CELL_NAMES) | set(GPU_FALLBACKS))


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
        if isinstance(unit, str) and unit.lower().removesuffix("cell") in NOT_IMPLEMENTED:
            return (f"\"unit\": {unit!r} (a RETURNN / TensorFlow cell) is not implemented here; "
                    f"known: {', '.join(known)}")
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
