"""RETURNN's ``returnn.tf.util.basic``: the tensor helpers configs call in ``eval`` strings and custom functions.

Each does what RETURNN's function of the same name does, on TF2 tensors (eager or traced).
"""

from __future__ import annotations

import math
from typing import Any, Sequence

import tensorflow as tf

from returnn.tf.util.data import Data, Dim, DimensionTag, FeatureDim, SpatialDim, batch_dim, single_step_dim

__all__ = ["Data", "Dim", "DimensionTag", "FeatureDim", "SpatialDim", "batch_dim", "single_step_dim",
           "expand_dims_unbroadcast", "expand_multiple_dims", "get_ndim", "get_shape", "get_shape_dim",
           "nd_indices", "safe_exp", "safe_log", "sequence_mask", "sequence_mask_time_major", "tile_transposed",
           "where_bc"]


def get_ndim(x: Any) -> int:
    """The (static) rank of ``x``."""
    return tf.convert_to_tensor(x).shape.rank


def get_shape_dim(x: Any, axis: int, name: str = "get_shape_dim") -> Any:
    """The size of ``axis``: an int when static, else a scalar int32 tensor."""
    x = tf.convert_to_tensor(x)
    static = x.shape[axis]
    return static if static is not None else tf.shape(x, name=name)[axis]


def get_shape(x: Any) -> list[Any]:
    """The shape as a list: an int per static axis, a scalar tensor per dynamic one."""
    x = tf.convert_to_tensor(x)
    return [get_shape_dim(x, axis) for axis in range(x.shape.rank)]


def expand_multiple_dims(x: Any, axes: Sequence[int], name: str = "expand_multiple_dims") -> Any:
    """``tf.expand_dims`` for each of ``axes`` in turn (each counted in the result so far)."""
    with tf.name_scope(name):
        for axis in axes:
            x = tf.expand_dims(x, axis=axis)
        return x


def expand_dims_unbroadcast(x: Any, axis: int, dim: Any, name: str = "expand_dims_unbroadcast") -> Any:
    """A new axis ``axis`` of size ``dim``, ``x`` repeated along it (a real copy, not a size-1 broadcast)."""
    with tf.name_scope(name):
        x = tf.expand_dims(tf.convert_to_tensor(x), axis)
        rank = x.shape.rank
        axis = axis % rank
        multiples = [1] * axis + [dim] + [1] * (rank - axis - 1)
        return tf.tile(x, tf.stack(multiples) if isinstance(dim, tf.Tensor) else multiples)


def tile_transposed(x: Any, axis: int, multiples: Any) -> Any:
    """Each entry along ``axis`` repeated ``multiples`` times in place: [a, b] -> [a, a, b, b]
    (the layout of a beam: hypothesis k of sequence b at ``b * multiples + k``)."""
    return tf.repeat(x, multiples, axis=axis)


def nd_indices(indices: Any, batch_axis: int = 0, indices_batch_major: bool | None = None) -> Any:
    """Indices for ``tf.gather_nd``: each index paired with its batch index, shape ``indices.shape + [2]``.

    ``[b, i]`` pairs (batch-major params) when ``indices_batch_major`` (default: ``batch_axis == 0``),
    else ``[i, b]`` (time-major params).
    """
    indices = tf.convert_to_tensor(indices)
    if indices_batch_major is None:
        indices_batch_major = batch_axis == 0
    batch_idxs = tf.range(tf.shape(indices)[batch_axis], dtype=indices.dtype)
    batch_idxs = expand_multiple_dims(batch_idxs, [i for i in range(indices.shape.rank) if i != batch_axis])
    batch_idxs = tf.zeros_like(indices) + batch_idxs
    pair = [batch_idxs, indices] if indices_batch_major else [indices, batch_idxs]
    return tf.stack(pair, axis=-1)


def where_bc(condition: Any, x: Any, y: Any, name: str = "where_bc") -> Any:
    """``tf.where`` with the three arguments broadcast against each other; a Python number takes the other's dtype."""
    with tf.name_scope(name):
        condition = tf.convert_to_tensor(condition)
        if isinstance(x, (int, float)) and not isinstance(y, (int, float)):
            y = tf.convert_to_tensor(y)
            x = tf.convert_to_tensor(x, dtype=y.dtype)
        else:
            x = tf.convert_to_tensor(x)
            y = tf.convert_to_tensor(y, dtype=x.dtype)
        shape = tf.broadcast_dynamic_shape(tf.shape(condition), tf.broadcast_dynamic_shape(tf.shape(x), tf.shape(y)))
        return tf.where(tf.broadcast_to(condition, shape), tf.broadcast_to(x, shape), tf.broadcast_to(y, shape))


def safe_log(x: Any, eps: float = 1e-20, use_fake_grad: bool = True) -> Any:
    """``log(max(x, eps))``: finite for x = 0. With ``use_fake_grad`` the gradient still flows where x < eps
    (as through ``log`` at eps), instead of being cut by the ``max``."""
    x = tf.convert_to_tensor(x)
    clipped = tf.maximum(x, tf.cast(eps, x.dtype))
    if use_fake_grad:
        clipped = x + tf.stop_gradient(clipped - x)
    return tf.math.log(clipped)


def safe_exp(x: Any, eps: float = 1e-20) -> Any:
    """``exp(x)`` kept within ``[eps, largest finite value]``: no 0 (whose log is -inf) and no inf."""
    x = tf.convert_to_tensor(x)
    upper = math.log(x.dtype.max) * (1 - 1e-4)  # exp(log(max)) itself rounds up to inf
    return tf.exp(tf.clip_by_value(x, tf.cast(math.log(eps), x.dtype), tf.cast(upper, x.dtype)))


def sequence_mask(lengths: Any, maxlen: Any = None) -> Any:
    """[B, T] bool, True on the first ``lengths[b]`` frames."""
    return tf.sequence_mask(lengths, maxlen=maxlen)


def sequence_mask_time_major(lengths: Any, maxlen: Any = None) -> Any:
    """[T, B] bool, True on the first ``lengths[b]`` frames."""
    return tf.transpose(tf.sequence_mask(lengths, maxlen=maxlen))
