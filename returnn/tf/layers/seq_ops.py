"""Tensor helpers the shape layers share: reorder by dims, per-sequence gathers along an axis, new dims."""

from __future__ import annotations

from typing import Any, Sequence

import tensorflow as tf

from returnn.tensor.data import Data
from returnn.tensor.dim import SPATIAL, Dim


def transpose_to(tensor: Any, src_dims: Sequence[Dim], dst_dims: Sequence[Dim]) -> Any:
    """``tensor`` laid out as ``src_dims`` reordered to ``dst_dims`` (the same Dim objects)."""
    src = list(src_dims)
    perm = [next(i for i, dim in enumerate(src) if dim is want) for want in dst_dims]
    return tensor if perm == list(range(len(perm))) else tf.transpose(tensor, perm)


def batch_axis_layout(data: Data, axis: int) -> tuple[Any, list[Dim]]:
    """``data.tensor`` as [B, axis, rest...] and the rest dims in their order."""
    batch = data.batch_dim_axis
    rest = [dim for i, dim in enumerate(data.dims) if i not in (batch, axis)]
    order = [data.dims[batch], data.dims[axis], *rest]
    return transpose_to(data.tensor, data.dims, order), rest


def axis_lengths(data: Data, axis: int) -> Any:
    """[B] valid lengths along ``axis`` (the full size for a static axis)."""
    return data.get_dyn_size(data.dims[axis])


def expand_to_rank(mask: Any, rank: int) -> Any:
    """``mask`` with trailing size-1 axes up to ``rank``."""
    extra = rank - len(mask.shape)
    return tf.reshape(mask, tf.concat([tf.shape(mask), tf.ones([extra], tf.int32)], 0)) if extra > 0 else mask


def gather_frames(x: Any, lengths: Any, positions: Any, fill: Any = 0.0) -> Any:
    """Per sequence, frames of ``x`` [B, T, ...] at ``positions`` [B, *K] -> [B, *K, ...].

    Positions outside ``0 <= p < lengths[b]`` take ``fill`` (a scalar, or a tensor broadcasting to the result).
    """
    positions = tf.cast(positions, tf.int32)
    lengths = tf.cast(lengths, tf.int32)
    lens = tf.reshape(lengths, tf.concat([[-1], tf.ones([tf.rank(positions) - 1], tf.int32)], 0))
    valid = (positions >= 0) & (positions < lens)
    idx = tf.clip_by_value(positions, 0, tf.maximum(tf.shape(x)[1] - 1, 0))
    gathered = tf.gather(x, idx, axis=1, batch_dims=1)
    valid = expand_to_rank(valid, len(gathered.shape))
    return tf.where(valid, gathered, tf.cast(fill, gathered.dtype))


def gather_static(x: Any, axis: int, positions: Sequence[int]) -> Any:
    """Entries of a static ``axis`` at ``positions``, the other axes unchanged."""
    return tf.gather(x, list(positions), axis=axis)


def clone_dim(dim: Dim, name: str) -> Dim:
    """A new Dim with the size and kind of ``dim`` (for an output that needs the same dim twice)."""
    return Dim(dim.size, name, kind=dim.kind)


def new_axis_dim(old: Dim, size: int | None, name: str) -> Dim:
    """The dim replacing ``old`` after a resize: ``old`` itself when unchanged, else a new dim of its kind."""
    if old.size is not None and size == old.size:
        return old
    return Dim(size, name, kind=old.kind if old.kind != "batch" else SPATIAL)


def replace_dim(data: Data, axis: int, new: Dim) -> Data:
    """Template of ``data`` with the dim at ``axis`` replaced; time/feature roles follow the dim."""
    old = data.dims[axis]
    dims = list(data.dims)
    dims[axis] = new
    changes: dict[str, Any] = {}
    if data.time_dim is old:
        changes["time_dim"] = new
    if data.feature_dim is old:
        changes["feature_dim"] = new
    return data.with_dims(dims, **changes)


def ceildiv(a: Any, b: int) -> Any:
    """``ceil(a / b)`` for ints or int tensors."""
    return -(-a // b)
