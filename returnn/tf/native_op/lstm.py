"""The fused native LSTM op: loading, the Python wrapper, and its gradient (registered once).

Gate order along the ``4n`` axis (shared by all LSTM units): cell input ``j``, input gate ``i``,
forget gate ``f``, output gate ``o``. The op takes the input projection for all frames (one big
matmul done outside), so inside the time loop only ``h_prev @ W_re`` and the element-wise cell run.
"""

from __future__ import annotations

import tensorflow as tf

from returnn.tf.native_op import build

LSTM_OP = build.OpSpec(name="native_lstm", cc_source="lstm.cc", headers=("lstm_gemm.h", "lstm_cuda.h", "cublas_min.h"),
                       cu_source="lstm.cu")
OP_TYPE = "ReturnnNativeLstm"

_gradient_registered = False


def load_native_lstm(*, compiler: str | None = None):
    """Compile (first time only), load the op library and register its gradient; returns the module."""
    module = build.load(LSTM_OP, compiler=compiler)
    _register_gradient()
    return module


def _register_gradient() -> None:
    """Register the op's gradient once per process (TF raises on a second registration)."""
    global _gradient_registered
    if _gradient_registered:
        return
    try:
        tf.RegisterGradient(OP_TYPE)(_native_lstm_grad)
    except KeyError:  # registered by an earlier copy of this module (e.g. importlib.reload)
        pass
    _gradient_registered = True


def _zeros_if_none(grad: tf.Tensor | None, like: tf.Tensor) -> tf.Tensor:
    return tf.zeros_like(like) if grad is None else grad


def _native_lstm_grad(op: tf.Operation, dy, _dc_all, _dgates, dfinal_c, dfinal_y):
    """Gradient w.r.t. z, v_h, c0, y0 (mask gets None); ``c`` and ``gates`` are internal outputs."""
    _z, v_h, c0, y0, mask = op.inputs
    y, c, gates, final_c, final_y = op.outputs
    module = build.load(LSTM_OP)
    dz, h_prev, dc0, dy0 = module.returnn_native_lstm_grad(
        v_h, c0, y0, mask, y, c, gates,
        _zeros_if_none(dy, y), _zeros_if_none(dfinal_c, final_c), _zeros_if_none(dfinal_y, final_y),
        direction=op.get_attr("direction"), cell_grad_clip=op.get_attr("cell_grad_clip"))
    n = tf.shape(v_h)[0]
    # The recurrent weight gradient over all steps at once: one large product, multithreaded by TF.
    dv_h = tf.matmul(tf.reshape(h_prev, [-1, n]), tf.reshape(dz, [-1, 4 * n]), transpose_a=True)
    return dz, dv_h, dc0, dy0, None


def native_lstm(z: tf.Tensor, v_h: tf.Tensor, c0: tf.Tensor, y0: tf.Tensor, mask: tf.Tensor, *,
                direction: int = 1, cell_grad_clip: float = 0.0) -> tuple[tf.Tensor, tf.Tensor, tf.Tensor]:
    """Run the fused LSTM over time; returns (y [T, B, n] zero on masked frames, final c, final h).

    ``z`` [T, B, 4n] is the input projection plus bias, ``v_h`` [n, 4n] the recurrent weights,
    ``c0``/``y0`` [B, n] the initial state, ``mask`` [T, B] (1 on valid frames, same dtype).
    ``direction`` -1 walks each sequence backwards; ``cell_grad_clip`` > 0 clips the cell gradient.
    """
    if direction not in (1, -1):
        raise ValueError(f"native_lstm: direction must be 1 or -1, got {direction!r}")
    module = load_native_lstm()
    y, _c, _gates, final_c, final_y = module.returnn_native_lstm(
        z, v_h, c0, y0, mask, direction=direction, cell_grad_clip=float(cell_grad_clip))
    return y, final_c, final_y
