"""LSTM units: nativelstm (fused native op), lstmblock (TF's BlockLSTM), standardlstm (TF loop), cudnnlstm.

All use ``W`` [n_in, 4n], ``W_re`` [n, 4n], ``b`` [4n] with gate order j (cell input), i, f, o; the
state is ``(c, h)``. Units that need another layout permute the weights when called. One step (``cell``,
shared by all of them) is the reference the fused whole-sequence ops must agree with.
"""

from __future__ import annotations

import tensorflow as tf

from returnn.errors import LayerConfigError
from returnn.tf.layers.rec.unit_base import RecUnit, State, register_unit, reverse_valid, valid_mask
from returnn.tf.native_op.lstm import load_native_lstm, native_lstm

ALTERNATIVES = "nativelstm (the default), lstmblock or standardlstm"


def last_valid(seq: tf.Tensor, seq_lens: tf.Tensor, initial: tf.Tensor) -> tf.Tensor:
    """seq [T, B, n] -> [B, n] at each sequence's last valid frame (``initial`` for empty ones)."""
    padded = tf.concat([initial[None], seq], axis=0)
    return tf.gather(tf.transpose(padded, [1, 0, 2]), seq_lens, batch_dims=1)


class LSTMUnitBase(RecUnit):
    """Shared parts of the LSTM units: four gate blocks, state (c, h)."""

    gates = 4
    state_keys = ("c", "h")

    def zero_state(self, batch: tf.Tensor) -> State:
        """(c, h), both zeros [batch, n_out]."""
        zeros = tf.zeros([batch, self.n_out], self.dtype)
        return zeros, zeros

    def cell(self, z_t: tf.Tensor, state: State, w_re: tf.Tensor) -> tuple[tf.Tensor, State]:
        """c = sigmoid(f) * c_prev + sigmoid(i) * tanh(j), h = sigmoid(o) * tanh(c), with the gate
        pre-activations j, i, f, o = z_t + h_prev @ W_re; y_t = h."""
        c_prev, h_prev = state
        j, i, f, o = tf.split(z_t + tf.matmul(h_prev, w_re), 4, axis=-1)
        c = tf.sigmoid(f) * c_prev + tf.sigmoid(i) * tf.tanh(j)
        h = tf.sigmoid(o) * tf.tanh(c)
        return h, (c, h)

    def gate_blocks(self, order: str) -> tuple[tf.Tensor, tf.Tensor, tf.Tensor]:
        """W, W_re, b with the gate blocks reordered from "jifo" to ``order`` (e.g. "ifjo")."""
        pos = ["jifo".index(gate) for gate in order]

        def reorder(param: tf.Variable) -> tf.Tensor:
            blocks = tf.split(param, 4, axis=-1)
            return tf.concat([blocks[p] for p in pos], axis=-1)

        return reorder(self.W), reorder(self.W_re), reorder(self.b)


@register_unit("nativelstm", "lstm", "nativelstm2")
class NativeLSTMUnit(LSTMUnitBase):
    """The fused native LSTM op (compiled at first use): input projection outside, time loop inside.

    ``unit_opts``: ``cell_grad_clip`` (float, 0 = off) clips the gradient on the cell state.
    """

    def __init__(self, *, cell_grad_clip: float = 0.0, **kwargs):
        super().__init__(**kwargs)
        self.cell_grad_clip = float(cell_grad_clip)
        load_native_lstm()  # compile / load now, before any tf.function traces a call

    def _run(self, x: tf.Tensor, seq_lens: tf.Tensor, direction: int, state: State) -> tuple[tf.Tensor, State]:
        c0, h0 = state
        mask = valid_mask(seq_lens, tf.shape(x)[0], self.dtype)
        y, c, h = native_lstm(self.project(x), tf.convert_to_tensor(self.W_re), c0, h0, mask,
                              direction=direction, cell_grad_clip=self.cell_grad_clip)
        return y, (c, h)


@register_unit("standardlstm")
class StandardLSTMUnit(LSTMUnitBase):
    """Pure TensorFlow: input projection as one matmul, then ``cell`` in a masked tf.while_loop over time."""


@register_unit("lstmblock")
class LSTMBlockUnit(LSTMUnitBase):
    """TensorFlow's fused BlockLSTM op (gate order i, j, f, o; projects the input per step).

    BlockLSTM, not BlockLSTMV2: in TF 2.21 the registered gradient of BlockLSTMV2 is wrong
    (it disagrees with finite differences), the one of BlockLSTM is right.
    """

    def _run(self, x: tf.Tensor, seq_lens: tf.Tensor, direction: int, state: State) -> tuple[tf.Tensor, State]:
        c0, h0 = state
        if direction == -1:
            x = reverse_valid(x, seq_lens)
        w, w_re, b = self.gate_blocks("ijfo")
        no_peephole = tf.zeros([self.n_out], self.dtype)
        outputs = tf.raw_ops.BlockLSTM(
            seq_len_max=tf.cast(tf.shape(x)[0], tf.int64), x=x, cs_prev=c0, h_prev=h0,
            w=tf.concat([w, w_re], axis=0), wci=no_peephole, wcf=no_peephole, wco=no_peephole, b=b,
            forget_bias=0.0, cell_clip=-1.0, use_peephole=False)
        cs, h = outputs.cs, outputs.h
        final = (last_valid(cs, seq_lens, c0), last_valid(h, seq_lens, h0))
        y = h * valid_mask(seq_lens, tf.shape(x)[0], self.dtype)[:, :, None]
        return (reverse_valid(y, seq_lens) if direction == -1 else y), final


@register_unit("cudnnlstm")
class CudnnLSTMUnit(LSTMUnitBase):
    """cuDNN's LSTM (GPU only), with the same params as the other LSTM units (recurrent bias 0)."""

    def __init__(self, **kwargs):
        problem = self.unavailable()
        if problem:
            raise LayerConfigError(f"layer '{kwargs.get('name', 'rec')}' (class \"rec\"): \"unit\": {problem}")
        super().__init__(**kwargs)

    @classmethod
    def unavailable(cls) -> str | None:
        """Without a visible GPU: a message naming the CPU units with the same params."""
        if tf.config.list_physical_devices("GPU"):
            return None
        return (f"'cudnnlstm' needs a GPU and none is visible; use {ALTERNATIVES} instead "
                "(same parameters, so checkpoints load unchanged)")

    def _run(self, x: tf.Tensor, seq_lens: tf.Tensor, direction: int, state: State) -> tuple[tf.Tensor, State]:
        c0, h0 = state
        if direction == -1:
            x = reverse_valid(x, seq_lens)
        w, w_re, b = self.gate_blocks("ifjo")  # cuDNN's order: i, f, c, o
        # cuDNN wants each gate's matrix as [n_out, n_x], flattened row-major.
        weights = [tf.reshape(tf.transpose(m), [-1]) for m in tf.split(w, 4, axis=1) + tf.split(w_re, 4, axis=1)]
        biases = tf.split(b, 4) + [tf.zeros([self.n_out], self.dtype)] * 4
        params = tf.raw_ops.CudnnRNNCanonicalToParamsV2(
            num_layers=1, num_units=self.n_out, input_size=self.n_in, weights=weights, biases=biases, rnn_mode="lstm")
        out = tf.raw_ops.CudnnRNNV3(
            input=x, input_h=h0[None], input_c=c0[None], params=params, sequence_lengths=seq_lens, rnn_mode="lstm",
            is_training=True, time_major=True)
        y = out.output * valid_mask(seq_lens, tf.shape(x)[0], self.dtype)[:, :, None]
        return (reverse_valid(y, seq_lens) if direction == -1 else y), (out.output_c[0], out.output_h[0])
