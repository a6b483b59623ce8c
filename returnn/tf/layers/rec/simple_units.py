"""GRU and vanilla tanh RNN units (state: h), RETURNN-like params ``W``, ``W_re``, ``b``."""

from __future__ import annotations

import tensorflow as tf

from returnn.tf.layers.rec.unit_base import RecUnit, State, masked_scan, register_unit


@register_unit("gru")
class GRUUnit(RecUnit):
    """GRU: gate blocks (r, u, candidate); h = u * h_prev + (1 - u) * tanh(x_c + (r * h_prev) @ W_re_c)."""

    gates = 3

    def _run(self, x: tf.Tensor, seq_lens: tf.Tensor, direction: int, state: State) -> tuple[tf.Tensor, State]:
        n = self.n_out
        w_re = tf.convert_to_tensor(self.W_re)
        w_gates, w_cand = w_re[:, : 2 * n], w_re[:, 2 * n:]

        def step(z_t: tf.Tensor, state: tuple) -> tuple[tf.Tensor, tuple]:
            (h,) = state
            r, u = tf.split(tf.sigmoid(z_t[:, : 2 * n] + tf.matmul(h, w_gates)), 2, axis=1)
            cand = tf.tanh(z_t[:, 2 * n:] + tf.matmul(r * h, w_cand))
            h = u * h + (1.0 - u) * cand
            return h, (h,)

        y, (h,) = masked_scan(step, self.project(x), seq_lens, (state,), direction=direction)
        return y, h


@register_unit("rnn")
class VanillaRNNUnit(RecUnit):
    """Elman RNN: h = tanh(x @ W + b + h_prev @ W_re)."""

    def _run(self, x: tf.Tensor, seq_lens: tf.Tensor, direction: int, state: State) -> tuple[tf.Tensor, State]:
        w_re = tf.convert_to_tensor(self.W_re)

        def step(z_t: tf.Tensor, state: tuple) -> tuple[tf.Tensor, tuple]:
            h = tf.tanh(z_t + tf.matmul(state[0], w_re))
            return h, (h,)

        y, (h,) = masked_scan(step, self.project(x), seq_lens, (state,), direction=direction)
        return y, h
