"""Activation functions by RETURNN's names; ``"a+b"`` applies ``a`` then ``b``."""

from __future__ import annotations

from typing import Any, Callable

import tensorflow as tf

from returnn.errors import LayerConfigError

ACTIVATIONS: dict[str, Callable[[Any], Any]] = {
    "identity": tf.identity, "linear": tf.identity,
    "relu": tf.nn.relu, "relu6": tf.nn.relu6, "leaky_relu": tf.nn.leaky_relu, "elu": tf.nn.elu, "selu": tf.nn.selu,
    "gelu": tf.nn.gelu, "swish": tf.nn.silu, "silu": tf.nn.silu,
    "tanh": tf.tanh, "sigmoid": tf.sigmoid, "log_sigmoid": tf.math.log_sigmoid, "softsign": tf.nn.softsign,
    "softplus": tf.nn.softplus, "softmax": tf.nn.softmax, "log_softmax": tf.nn.log_softmax,
    "exp": tf.exp, "log": tf.math.log, "abs": tf.abs, "square": tf.square, "sqrt": tf.sqrt,
    "sin": tf.sin, "cos": tf.cos,
}


def get_activation(name: str | None) -> Callable[[Any], Any]:
    """The function for ``name`` (None: identity); unknown names raise ``LayerConfigError`` listing known ones."""
    if name is None:
        return tf.identity
    parts = [part.strip() for part in str(name).split("+")]
    unknown = [part for part in parts if part not in ACTIVATIONS]
    if unknown:
        raise LayerConfigError(f'"activation": unknown {unknown[0]!r}; known: {", ".join(sorted(ACTIVATIONS))}')
    funcs = [ACTIVATIONS[part] for part in parts]
    if len(funcs) == 1:
        return funcs[0]

    def chained(x: Any) -> Any:
        for func in funcs:
            x = func(x)
        return x

    return chained
