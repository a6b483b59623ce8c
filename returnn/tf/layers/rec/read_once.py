"""Params read once before a ``tf.while_loop`` instead of once per step.

A variable read inside the loop body is an intermediate value of every step, so the loop's gradient keeps
one copy of it per step (an [n, 4n] LSTM matrix times the number of steps). Read before the loop, it is a
value the body captures, stored once.
"""

from __future__ import annotations

import contextlib
from typing import Iterator

import tensorflow as tf


@contextlib.contextmanager
def params_read_once(module: tf.Module) -> Iterator[None]:
    """While the loop body is traced: every ``tf.Variable`` attribute of ``module``'s submodules is its value,
    read here (before the loop); the variables are put back afterwards."""
    swapped: list[tuple[tf.Module, str, tf.Variable]] = []
    values: dict[int, tf.Tensor] = {}
    try:
        for sub in (module, *module.submodules):
            for name, value in list(vars(sub).items()):
                if isinstance(value, tf.Variable):
                    if id(value) not in values:
                        values[id(value)] = tf.convert_to_tensor(value)
                    swapped.append((sub, name, value))
                    object.__setattr__(sub, name, values[id(value)])
        yield
    finally:
        for sub, name, value in swapped:
            object.__setattr__(sub, name, value)
