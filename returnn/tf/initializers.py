"""Parameter initializers by RETURNN's spellings: ``"glorot_uniform"``, ``"random_normal(stddev=0.1)"``, 0.0.

Values are drawn from a stateless RNG seeded by the network seed and the parameter's name, so a
network builds the same parameters whatever order its layers are constructed in.
"""

from __future__ import annotations

import ast
import math
import zlib
from typing import Any, Callable, Sequence

import numpy as np
import tensorflow as tf

from returnn.errors import LayerConfigError

Initializer = Callable[[Sequence[int], tf.DType, Any], Any]  # (shape, dtype, seed [2]) -> tensor


def _fans(shape: Sequence[int]) -> tuple[float, float]:
    """Fan-in and fan-out: [in, out] for matrices, receptive field times channels for conv kernels."""
    if len(shape) == 0:
        return 1.0, 1.0
    if len(shape) == 1:
        return float(shape[0]), float(shape[0])
    receptive = float(np.prod(shape[:-2])) if len(shape) > 2 else 1.0
    return shape[-2] * receptive, shape[-1] * receptive


def variance_scaling(scale: float = 1.0, mode: str = "fan_in", distribution: str = "truncated_normal") -> Initializer:
    """He/Glorot/LeCun family: variance ``scale / fan`` with a normal or uniform distribution."""
    if mode not in ("fan_in", "fan_out", "fan_avg") or distribution not in ("truncated_normal", "normal", "uniform"):
        raise LayerConfigError(f"variance_scaling: bad mode {mode!r} or distribution {distribution!r}")

    def init(shape: Sequence[int], dtype: tf.DType, seed: Any) -> Any:
        fan_in, fan_out = _fans(shape)
        fan = {"fan_in": fan_in, "fan_out": fan_out, "fan_avg": (fan_in + fan_out) / 2.0}[mode]
        variance = scale / max(1.0, fan)
        if distribution == "uniform":
            limit = math.sqrt(3.0 * variance)
            return tf.random.stateless_uniform(shape, seed, -limit, limit, dtype=dtype)
        if distribution == "normal":
            return tf.random.stateless_normal(shape, seed, stddev=math.sqrt(variance), dtype=dtype)
        # stddev of a normal truncated at 2 sigma is 0.8796 of the untruncated one
        return tf.random.stateless_truncated_normal(shape, seed, stddev=math.sqrt(variance) / 0.87962566103423978,
                                                    dtype=dtype)

    return init


def random_normal(mean: float = 0.0, stddev: float = 1.0) -> Initializer:
    """Normal values."""
    return lambda shape, dtype, seed: tf.random.stateless_normal(shape, seed, mean=mean, stddev=stddev, dtype=dtype)


def truncated_normal(mean: float = 0.0, stddev: float = 1.0) -> Initializer:
    """Normal values cut at two standard deviations."""
    return lambda shape, dtype, seed: tf.random.stateless_truncated_normal(shape, seed, mean, stddev, dtype=dtype)


def random_uniform(minval: float = -0.05, maxval: float = 0.05) -> Initializer:
    """Uniform values in [minval, maxval)."""
    return lambda shape, dtype, seed: tf.random.stateless_uniform(shape, seed, minval, maxval, dtype=dtype)


def constant(value: float = 0.0) -> Initializer:
    """Every entry ``value``."""
    return lambda shape, dtype, seed: tf.fill(shape, tf.cast(value, dtype))


def orthogonal(gain: float = 1.0) -> Initializer:
    """A (semi-)orthogonal matrix over the last axis, via QR of a normal matrix."""

    def init(shape: Sequence[int], dtype: tf.DType, seed: Any) -> Any:
        rows = int(np.prod(shape[:-1])) if len(shape) > 1 else 1
        cols = int(shape[-1])
        flat = tf.random.stateless_normal((max(rows, cols), min(rows, cols)), seed, dtype=tf.float32)
        q, r = tf.linalg.qr(flat)
        q *= tf.sign(tf.linalg.diag_part(r))
        if rows < cols:
            q = tf.transpose(q)
        return tf.cast(gain * tf.reshape(q, shape), dtype)

    return init


INITIALIZERS: dict[str, Callable[..., Initializer]] = {
    "glorot_uniform": lambda: variance_scaling(1.0, "fan_avg", "uniform"),
    "xavier": lambda: variance_scaling(1.0, "fan_avg", "uniform"),
    "glorot_normal": lambda: variance_scaling(1.0, "fan_avg", "truncated_normal"),
    "he_uniform": lambda: variance_scaling(2.0, "fan_in", "uniform"),
    "he_normal": lambda: variance_scaling(2.0, "fan_in", "truncated_normal"),
    "lecun_uniform": lambda: variance_scaling(1.0, "fan_in", "uniform"),
    "lecun_normal": lambda: variance_scaling(1.0, "fan_in", "truncated_normal"),
    "variance_scaling": variance_scaling,
    "random_normal": random_normal,
    "truncated_normal": truncated_normal,
    "random_uniform": random_uniform,
    "orthogonal": orthogonal,
    "zeros": lambda: constant(0.0),
    "ones": lambda: constant(1.0),
    "constant": constant,
}


def _parse_call(spec: str) -> tuple[str, dict[str, Any]]:
    """``"random_normal(stddev=0.1)"`` -> ("random_normal", {"stddev": 0.1}); ``_initializer`` suffix dropped."""
    try:
        node = ast.parse(spec.strip(), mode="eval").body
    except SyntaxError:
        raise LayerConfigError(f"initializer {spec!r}: cannot parse") from None
    if isinstance(node, ast.Name):
        name, kwargs = node.id, {}
    elif isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and not node.args:
        name = node.func.id
        try:
            kwargs = {kw.arg: ast.literal_eval(kw.value) for kw in node.keywords}
        except ValueError:
            raise LayerConfigError(f"initializer {spec!r}: arguments must be literals") from None
    else:
        raise LayerConfigError(f"initializer {spec!r}: expected 'name' or 'name(key=value, ...)'")
    return name[: -len("_initializer")] if name.endswith("_initializer") else name, kwargs


def get_initializer(spec: str | float | int | Initializer) -> Initializer:
    """An initializer from a name, a ``name(k=v)`` string, a number (constant) or a callable."""
    if isinstance(spec, (int, float)) and not isinstance(spec, bool):
        return constant(float(spec))
    if callable(spec):
        return spec
    if not isinstance(spec, str):
        raise LayerConfigError(f"initializer: expected a name, a number or a callable, got {spec!r}")
    name, kwargs = _parse_call(spec)
    if name not in INITIALIZERS:
        raise LayerConfigError(f"initializer {spec!r}: unknown; known: {', '.join(sorted(INITIALIZERS))}")
    try:
        return INITIALIZERS[name](**kwargs)
    except TypeError as exc:
        raise LayerConfigError(f"initializer {spec!r}: {exc}") from None


def param_seed(network_seed: int, param_name: str) -> tf.Tensor:
    """Stateless RNG seed [2] from the network seed and the full parameter name."""
    return tf.constant([network_seed, zlib.crc32(param_name.encode("utf-8")) & 0x7FFFFFFF], dtype=tf.int64)
