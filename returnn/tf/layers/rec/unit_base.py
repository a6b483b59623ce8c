"""Base class, registry and shared helpers of the recurrent units (see ``units`` for the unit list).

All units are time-major: ``x`` [T, B, n_in], ``seq_lens`` [B]; ``y`` [T, B, n_out] is zero on
padded frames; ``direction`` -1 runs backwards over each sequence's valid frames. The LSTM units
share their parameters (``W`` [n_in, 4n], ``W_re`` [n, 4n], ``b`` [4n], gate order j, i, f, o), so a
model trained with one LSTM unit loads into any other.

Each unit's recurrence is one method, ``cell(z_t, state, w_re)`` on the projected frame
``z_t = x_t @ W + b``: ``step`` (one frame, for rec loops) and the whole-sequence loop both call it;
fused ops (native LSTM, BlockLSTM, cuDNN) compute the same function over whole sequences.
"""

from __future__ import annotations

import abc
import math
import re
from typing import Callable, Union

import tensorflow as tf

from returnn.errors import LayerConfigError

ParamInit = Union[str, float, Callable[[tuple, tf.DType], tf.Tensor]]
State = Union[tf.Tensor, tuple]


def initial_value(init: ParamInit, shape: tuple, dtype: tf.DType = tf.float32, *, seed: int | None = None) -> tf.Tensor:
    """Initial parameter value from a name (glorot_uniform, glorot_normal, zeros, ones), a number, or a callable."""
    if callable(init):
        return tf.cast(init(shape, dtype), dtype)
    if isinstance(init, (int, float)):
        return tf.fill(shape, tf.cast(init, dtype))
    fan_in, fan_out = (shape[0], shape[-1]) if len(shape) >= 2 else (shape[0], shape[0])
    if init == "glorot_uniform":
        limit = math.sqrt(6.0 / (fan_in + fan_out))
        return tf.random.uniform(shape, -limit, limit, dtype=dtype, seed=seed)
    if init == "glorot_normal":
        return tf.random.truncated_normal(shape, stddev=math.sqrt(2.0 / (fan_in + fan_out)), dtype=dtype, seed=seed)
    if init in ("zeros", "ones"):
        return (tf.zeros if init == "zeros" else tf.ones)(shape, dtype=dtype)
    raise LayerConfigError(
        f"rec unit param init: unknown initializer {init!r}; expected glorot_uniform, glorot_normal, zeros, ones, "
        "a number or a callable(shape, dtype)")


def module_name(name: str) -> str:
    """A tf.Module name (a Python identifier) for a layer name such as "enc/lstm-1"."""
    ident = re.sub(r"\W", "_", name)
    return ident if ident and not ident[0].isdigit() else "_" + ident


def as_state(state: State | list) -> State:
    """A state as the units carry it: a tensor, or a tuple (a list given by a caller becomes one)."""
    return tuple(state) if isinstance(state, list) else state


def valid_mask(seq_lens: tf.Tensor, time: tf.Tensor, dtype: tf.DType = tf.bool) -> tf.Tensor:
    """[T, B] mask, true on the valid frames of each sequence."""
    return tf.transpose(tf.sequence_mask(seq_lens, time, dtype=dtype))


def reverse_valid(x: tf.Tensor, seq_lens: tf.Tensor) -> tf.Tensor:
    """Reverse each sequence's valid frames of a time-major tensor; padding stays at the end."""
    return tf.reverse_sequence(x, tf.cast(seq_lens, tf.int64), seq_axis=0, batch_axis=1)


def masked_scan(step: Callable[[tf.Tensor, State], tuple[tf.Tensor, State]], inputs: tf.Tensor,
                seq_lens: tf.Tensor, state: State, *, direction: int) -> tuple[tf.Tensor, State]:
    """Run ``step(x_t, state) -> (y_t, state)`` over time in a tf.while_loop, frozen on padded frames.

    ``state`` is a tensor or a tuple of [B, ...] tensors. Returns (y [T, B, n] with zeros on padding,
    the state at each sequence's last valid frame).
    """
    if direction == -1:
        inputs = reverse_valid(inputs, seq_lens)
    time = tf.shape(inputs)[0]
    mask = valid_mask(seq_lens, time)
    xs = tf.TensorArray(inputs.dtype, size=time).unstack(inputs)
    ys = tf.TensorArray(inputs.dtype, size=time)

    def body(t, state, ys):
        y, new_state = step(xs.read(t), state)
        valid = mask[t][:, None]
        state = tf.nest.map_structure(lambda new, old: tf.where(valid, new, old), new_state, state)
        return t + 1, state, ys.write(t, tf.where(valid, y, tf.zeros_like(y)))

    _, state, ys = tf.while_loop(lambda t, *_: t < time, body, (tf.constant(0), state, ys), maximum_iterations=time)
    y = ys.stack()
    y.set_shape(inputs.shape[:2].concatenate(y.shape[2:]))
    return (reverse_valid(y, seq_lens) if direction == -1 else y), state


class RecUnit(tf.Module, abc.ABC):
    """A recurrent unit over whole sequences (``__call__``) or one frame (``step``); params are created in
    the constructor."""

    gates: int = 1  # blocks of n_out in W / W_re / b
    state_keys: tuple[str, ...] | None = None  # names of the state's parts when it is a tuple (None: one tensor)

    def __init__(self, *, n_in: int, n_out: int, name: str = "rec", param_init: ParamInit = "glorot_uniform",
                 bias_init: ParamInit = 0.0, dtype: tf.DType = tf.float32, seed: int | None = None):
        super().__init__(name=module_name(name))
        self.layer_name = name  # as in the config (may contain "/" or "-"), for messages
        self.n_in, self.n_out, self.dtype = int(n_in), int(n_out), dtype
        width = self.gates * self.n_out
        with self.name_scope:
            self.W = tf.Variable(initial_value(param_init, (self.n_in, width), dtype, seed=seed), name="W")
            self.W_re = tf.Variable(initial_value(param_init, (self.n_out, width), dtype, seed=seed), name="W_re")
            self.b = tf.Variable(initial_value(bias_init, (width,), dtype, seed=seed), name="b")

    def __call__(self, x: tf.Tensor, seq_lens: tf.Tensor, *, direction: int = 1, initial_state: State | None = None,
                 train: bool = False) -> tuple[tf.Tensor, State]:
        """x [T, B, n_in], seq_lens [B] -> (y [T, B, n_out], final state); see the module docstring."""
        if direction not in (1, -1):
            raise LayerConfigError(
                f"layer '{self.layer_name}' (class \"rec\"): \"direction\" must be 1 or -1, got {direction!r}")
        x = tf.convert_to_tensor(x, self.dtype)
        seq_lens = tf.cast(seq_lens, tf.int32)
        batch = tf.shape(x)[1]
        if initial_state is None:
            initial_state = self.zero_state(batch)
        return self._run(x, seq_lens, direction, as_state(initial_state))

    @classmethod
    def unavailable(cls) -> str | None:
        """Why this unit cannot run here (e.g. no GPU), naming alternatives; None when it can."""
        return None

    def zero_state(self, batch: tf.Tensor) -> State:
        """Zero initial state for ``batch`` sequences."""
        return tf.zeros([batch, self.n_out], self.dtype)

    def step(self, x_t: tf.Tensor, state: State, *,
             weights: tuple[tf.Tensor, tf.Tensor, tf.Tensor] | None = None) -> tuple[tf.Tensor, State]:
        """One frame: x_t [B, n_in] and the state (as ``zero_state`` makes it) -> (y_t [B, n_out], new state).

        ``weights``: ``read_weights()`` done once before a tf.while_loop; by default the params are read here,
        and a read inside a loop body is kept per step for the gradient ([n_in + n, gates * n] floats a step).
        """
        w, w_re, b = weights if weights is not None else self.read_weights()
        x_t = tf.convert_to_tensor(x_t, self.dtype)
        return self.cell(tf.matmul(x_t, w) + b, as_state(state), w_re)

    def read_weights(self) -> tuple[tf.Tensor, tf.Tensor, tf.Tensor]:
        """``W``, ``W_re``, ``b`` read as tensors, for ``step``."""
        return tf.convert_to_tensor(self.W), tf.convert_to_tensor(self.W_re), tf.convert_to_tensor(self.b)

    def project(self, x: tf.Tensor) -> tf.Tensor:
        """x @ W + b for all frames as one matmul: [T, B, n_in] -> [T, B, gates * n_out]."""
        shape = tf.shape(x)
        flat = tf.matmul(tf.reshape(x, [-1, self.n_in]), self.W) + self.b
        return tf.reshape(flat, [shape[0], shape[1], self.gates * self.n_out])

    @abc.abstractmethod
    def cell(self, z_t: tf.Tensor, state: State, w_re: tf.Tensor) -> tuple[tf.Tensor, State]:
        """The recurrence on one projected frame z_t [B, gates * n_out] with recurrent weights ``w_re``
        (a tensor read once per sequence): (y_t [B, n_out], new state)."""

    def _run(self, x: tf.Tensor, seq_lens: tf.Tensor, direction: int, state: State) -> tuple[tf.Tensor, State]:
        """The unit's computation on validated inputs; by default ``cell`` in a masked loop over time."""
        w_re = tf.convert_to_tensor(self.W_re)  # read once: a read inside the loop is kept per step

        def step(z_t: tf.Tensor, state: State) -> tuple[tf.Tensor, State]:
            return self.cell(z_t, state, w_re)

        return masked_scan(step, self.project(x), seq_lens, state, direction=direction)


UNITS: dict[str, type[RecUnit]] = {}


def register_unit(*names: str) -> Callable[[type[RecUnit]], type[RecUnit]]:
    """Class decorator adding a unit under the given (lower case) ``unit`` strings."""

    def decorate(cls: type[RecUnit]) -> type[RecUnit]:
        for name in names:
            UNITS[name.lower()] = cls
        return cls

    return decorate
