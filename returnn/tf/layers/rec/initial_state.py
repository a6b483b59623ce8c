"""``initial_state`` of a rec layer with a unit string: the unit's state before the first frame (RETURNN's option).

Values: ``None`` / ``"zeros"`` / ``0`` (default), ``"ones"``, a number, ``"var"`` (a trained vector per state part,
params ``initial_c`` and ``initial_h`` for an LSTM, ``initial_h`` otherwise), or a layer name whose output [B, n_out]
is taken as is; one value fills every part of the state (an LSTM's c and h), a dict {"c": ..., "h": ...} gives
each part its own. ``"keep_over_epoch"`` (a state carried across batches) is not supported.
"""

from __future__ import annotations

from typing import Any, Callable, Mapping

import tensorflow as tf

from returnn.tensor.data import Data
from returnn.tf.layers.base import LayerContext

KEYWORDS = ("zeros", "ones", "var")


def state_parts(spec: Any, keys: tuple[str, ...] | None) -> dict[str, Any]:
    """The value of each state part (keys: the unit's ``state_keys``, or ("h",) for one tensor)."""
    names = keys or ("h",)
    if isinstance(spec, Mapping):
        return {key: spec.get(key) for key in names}
    return {key: spec for key in names}


def layer_names(spec: Any) -> list[str]:
    """The layers an ``initial_state`` value reads."""
    values = spec.values() if isinstance(spec, Mapping) else [spec]
    return [value for value in values if isinstance(value, str) and value not in KEYWORDS]


def check(ctx: LayerContext, spec: Any, keys: tuple[str, ...] | None, n_out: int, *, steps: bool) -> None:
    """Errors naming ``"initial_state"``: unknown parts, bad values, layers of the wrong shape."""
    names = keys or ("h",)
    if isinstance(spec, Mapping):
        extra = sorted(set(spec) - set(names))
        if extra:
            raise ctx.error(f'"initial_state": no state part {", ".join(map(repr, extra))}; the unit has '
                            f"{', '.join(map(repr, names))}")
    for key, value in state_parts(spec, keys).items():
        if value is None or value in KEYWORDS or (isinstance(value, (int, float)) and not isinstance(value, bool)):
            continue
        if not isinstance(value, str):
            raise ctx.error(f'"initial_state": expected "zeros", "ones", "var", a number or a layer name, got {value!r}')
        if value.startswith("keep_over_epoch"):
            raise ctx.error(f'"initial_state": {value!r} (a state kept across batches) is not supported; use "zeros", '
                            '"var" or a layer')
        if steps:
            raise ctx.error(f'"initial_state": layer {value!r} inside a rec loop; the loop starts each step\'s state '
                            "from the previous step (give a layer's output as an input instead)")
        template = ctx.dependency(value)
        if template.batch_dim_axis is None or template.batch_ndim != 2 or template.dim != n_out:
            raise ctx.error(f'"initial_state": layer {value!r} for state part {key!r} must be [B, {n_out}], got '
                            f"{template.describe()}")


def make_params(spec: Any, keys: tuple[str, ...] | None, n_out: int,
                add_param: Callable[..., tf.Variable]) -> dict[str, tf.Variable]:
    """Params ``initial_<part>`` [n_out] of the ``"var"`` parts (zeros at the start), keyed by state part."""
    return {key: add_param(f"initial_{key}", (n_out,), init=0.0)
            for key, value in state_parts(spec, keys).items() if value == "var"}


def initial_state(spec: Any, keys: tuple[str, ...] | None, *, batch: Any, n_out: int, dtype: tf.DType,
                  params: Mapping[str, Any], refs: Mapping[str, Data]) -> Any:
    """The unit's initial state for ``batch`` sequences (a tuple in ``keys`` order, or one tensor)."""
    parts = []
    for key, value in state_parts(spec, keys).items():
        if value is None or value == "zeros":
            value = 0.0
        elif value == "ones":
            value = 1.0
        if value == "var":
            part = tf.tile(tf.convert_to_tensor(params[key])[None], [batch, 1])
        elif isinstance(value, str):
            part = tf.cast(refs[value].copy_as_batch_major().tensor, dtype)
        else:
            part = tf.fill([batch, n_out], tf.cast(value, dtype))
        parts.append(part)
    return tuple(parts) if keys else parts[0]
