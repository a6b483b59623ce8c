"""The ``Updater``: gradients -> noise, clipping, accumulation -> optimizer step, with the learning rate.

Config keys (RETURNN's, applied in RETURNN's order): ``gradient_noise`` (stddev of truncated Gaussian
noise added to every gradient), ``gradient_clip`` (clip each gradient element to [-c, c]),
``gradient_clip_global_norm`` (scale all gradients so their joint L2 norm is at most c), ``accum_grad_multiple_step``
(sum gradients of N steps, update once with their mean), ``weight_decay`` (decoupled decay
``var -= lr * wd * var`` after each update, for any optimizer), plus the optimizer keys
(see ``returnn.tf.optimizers``).
"""

from __future__ import annotations

from typing import Sequence

import tensorflow as tf

from returnn.errors import ConfigError
from returnn.tf.distributed import assign, assign_add, assign_sub
from returnn.tf.optimizers import Optimizer, optimizer_from_config


class Updater(tf.Module):
    """Owns the optimizer, the learning-rate variable and the gradient accumulators."""

    def __init__(self, config, variables: Sequence[tf.Variable]):
        super().__init__(name="updater")
        self.variables_to_train = list(variables)
        self.optimizer: Optimizer = optimizer_from_config(config, self.variables_to_train)
        self.learning_rate = tf.Variable(config.float("learning_rate", 1.0), dtype=tf.float32, trainable=False,
                                         name="learning_rate")
        self.gradient_clip = config.float("gradient_clip", 0.0)
        self.gradient_clip_global_norm = config.float("gradient_clip_global_norm", 0.0)
        self.gradient_noise = config.float("gradient_noise", 0.0)
        self.weight_decay = config.float("weight_decay", 0.0)
        self.accum_steps = config.int("accum_grad_multiple_step", 1)
        for key, value in (("gradient_clip", self.gradient_clip), ("gradient_clip_global_norm", self.gradient_clip_global_norm),
                           ("gradient_noise", self.gradient_noise), ("weight_decay", self.weight_decay)):
            if value < 0:
                raise ConfigError(f'config key "{key}": expected a value >= 0, got {value}')
        if self.accum_steps < 1:
            raise ConfigError(f'config key "accum_grad_multiple_step": expected an int >= 1, got {self.accum_steps}')
        self.noise_seed = config.int("random_seed", 42)
        self.global_train_step = tf.Variable(0, dtype=tf.int64, trainable=False, name="global_train_step")
        self.accumulators = [tf.Variable(tf.zeros(v.shape, v.dtype), trainable=False, name="accum")
                             for v in self.variables_to_train] if self.accum_steps > 1 else []

    def set_learning_rate(self, value: float) -> None:
        """Set the learning rate used by the following steps (from the epoch's learning-rate control)."""
        self.learning_rate.assign(value)

    def apply_gradients(self, grads: Sequence[tf.Tensor | None]) -> tf.Tensor:
        """Process and apply gradients (inside the train step's tf.function); returns their global norm."""
        grads = [None if g is None else tf.convert_to_tensor(g) for g in grads]
        present = [g for g in grads if g is not None]
        global_norm = tf.linalg.global_norm(present) if present else tf.constant(0.0)
        # RETURNN's order: noise, then clipping (so the clipping bounds the noise too)
        if self.gradient_noise:
            grads = self._add_noise(grads)
        if self.gradient_clip:
            grads = [None if g is None else tf.clip_by_value(g, -self.gradient_clip, self.gradient_clip) for g in grads]
        if self.gradient_clip_global_norm:
            clipped, _ = tf.clip_by_global_norm([g for g in grads if g is not None], self.gradient_clip_global_norm)
            it = iter(clipped)
            grads = [None if g is None else next(it) for g in grads]
        assign_add(self.global_train_step, 1)
        if self.accum_steps == 1:
            self._update(grads)
        else:
            self._accumulate_and_maybe_update(grads)
        return global_norm

    def _add_noise(self, grads: list) -> list:
        """Truncated Gaussian noise, drawn statelessly from (``random_seed``, step, variable index): every replica
        of a distributed step adds the same noise."""
        step = tf.cast(self.global_train_step, tf.int64)
        seeds = [tf.stack([step, tf.constant(self.noise_seed * 100003 + i, tf.int64)]) for i in range(len(grads))]
        return [None if g is None else
                g + tf.random.stateless_truncated_normal(tf.shape(g), seed, stddev=self.gradient_noise, dtype=g.dtype)
                for g, seed in zip(grads, seeds)]

    def _accumulate_and_maybe_update(self, grads: list) -> None:
        for acc, g in zip(self.accumulators, grads):
            if g is not None:
                assign_add(acc, g)

        def update():
            self._update([None if g is None else acc / float(self.accum_steps) for acc, g in zip(self.accumulators, grads)])
            for acc in self.accumulators:
                assign(acc, tf.zeros_like(acc))
            return tf.constant(True)

        tf.cond(self.global_train_step % self.accum_steps == 0, update, lambda: tf.constant(False))

    def _update(self, grads: list) -> None:
        self.optimizer.apply(grads, self.learning_rate)
        if self.weight_decay:
            for var, g in zip(self.variables_to_train, grads):
                if g is not None:
                    assign_sub(var, self.learning_rate * self.weight_decay * var)
