"""GRU and vanilla tanh RNN units (state: h), RETURNN-like params ``W``, ``W_re``, ``b``."""

from __future__ import annotations

import tensorflow as tf

from returnn.tf.layers.rec.unit_base import RecUnit, State, register_unit


@register_unit("gru")
class GRUUnit(RecUnit):
    """GRU: gate blocks (r, u, candidate); h = u * h_prev + (1 - u) * tanh(x_c + (r * h_prev) @ W_re_c)."""

    gates = 3

    def cell(self, z_t: tf.Tensor, state: State, w_re: tf.Tensor) -> tuple[tf.Tensor, State]:
        """r, u = sigmoid(z_t[r, u] + h_prev @ W_re[r, u]); the new h is also the output."""
        n = self.n_out
        r, u = tf.split(tf.sigmoid(z_t[:, : 2 * n] + tf.matmul(state, w_re[:, : 2 * n])), 2, axis=1)
        cand = tf.tanh(z_t[:, 2 * n:] + tf.matmul(r * state, w_re[:, 2 * n:]))
        h = u * state + (1.0 - u) * cand
        return h, h


@register_unit("rnn")
class VanillaRNNUnit(RecUnit):
    """Elman RNN: h = tanh(x @ W + b + h_prev @ W_re)."""

    def cell(self, z_t: tf.Tensor, state: State, w_re: tf.Tensor) -> tuple[tf.Tensor, State]:
        """h = tanh(z_t + h_prev @ W_re), also the output."""
        h = tf.tanh(z_t + tf.matmul(state, w_re))
        return h, h
