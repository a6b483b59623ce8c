"""Aligning several ``Data`` to common dims: broadcasting and concatenation on the feature axis."""

from __future__ import annotations

from typing import Any, Sequence

import tensorflow as tf

from returnn.errors import LayerConfigError
from returnn.tensor.data import _AUTO as _AUTO_TIME
from returnn.tensor.data import Data
from returnn.tensor.dim import FEATURE, Dim, feature_dim


def _match_dims(dims: Sequence[Dim], targets: Sequence[Dim]) -> list[int | None]:
    """For each of ``dims`` the index in ``targets`` it aligns to (same object first, then ``matches``)."""
    used: set[int] = set()
    result: list[int | None] = []
    for dim in dims:
        idx = next((j for j, target in enumerate(targets) if target is dim and j not in used), None)
        if idx is None:
            idx = next((j for j, target in enumerate(targets) if target.matches(dim) and j not in used), None)
        if idx is not None:
            used.add(idx)
        result.append(idx)
    return result


def _conflict(dim: Dim, common: Sequence[Dim], matched: set[int]) -> Dim | None:
    """A dim of ``common`` that ``dim`` should have matched: same kind, both feature or both dynamic."""
    for j, other in enumerate(common):
        if j in matched or other.kind != dim.kind:
            continue
        if dim.kind == FEATURE or (dim.is_dynamic and other.is_dynamic):
            return other
    return None


def common_dims(sources: Sequence[Data]) -> tuple[Dim, ...]:
    """The broadcast dims of ``sources``: the largest source's order, then unmatched dims of the others.

    Two feature dims, or two dynamic dims, that do not match are an error naming both.
    """
    base = max(sources, key=lambda data: data.batch_ndim)
    common = list(base.dims)
    for data in sources:
        idxs = _match_dims(data.dims, common)
        matched = {j for j in idxs if j is not None}
        for dim, idx in zip(data.dims, idxs):
            if idx is not None:
                continue
            other = _conflict(dim, common, matched)
            if other is not None:
                raise LayerConfigError(
                    f"dim mismatch: {other.describe()} of {base.name!r} vs {dim.describe()} of {data.name!r}")
            common.append(dim)
    return tuple(common)


def aligned_tensor(data: Data, dims: Sequence[Dim]) -> Any:
    """``data.tensor`` transposed to the order of ``dims``, with size-1 axes for dims it lacks."""
    idxs = _match_dims(dims, data.dims)
    missing = [i for i, dim in enumerate(data.dims) if i not in idxs]
    if missing:
        names = ", ".join(data.dims[i].describe() for i in missing)
        raise LayerConfigError(f"{data.describe()}: dims {names} not in the target dims")
    present = [idx for idx in idxs if idx is not None]
    tensor = data.tensor
    if present != sorted(present) or len(present) != data.batch_ndim:
        tensor = tf.transpose(tensor, present)
    for axis, idx in enumerate(idxs):
        if idx is None:
            tensor = tf.expand_dims(tensor, axis)
    return tensor


def merged_dyn_sizes(sources: Sequence[Data]) -> dict[Dim, Any]:
    """The dynamic sizes of all ``sources`` together."""
    sizes: dict[Dim, Any] = {}
    for data in sources:
        sizes.update(data.dyn_sizes)
    return sizes


def concat_features_template(sources: Sequence[Data], *, name: str) -> Data:
    """Template of ``sources`` concatenated on the feature axis: the other dims broadcast (a source without
    an axis another one has is repeated along it; e.g. an encoder summary [B, F] beside frames [T, B, F]),
    in the order of the source with the most axes."""
    if not sources:
        raise LayerConfigError("no sources to concatenate")
    if len(sources) == 1:
        return sources[0]
    for data in sources:
        if data.sparse or data.feature_dim is None:
            raise LayerConfigError(f"cannot concatenate {data.describe()} on the feature axis: it has none")
    rests = [data.copy_template().with_dims([dim for dim in data.dims if dim is not data.feature_dim],
                                            feature_dim=None) for data in sources]
    try:
        rest = common_dims(rests)
    except LayerConfigError as exc:
        raise LayerConfigError(f"cannot concatenate {', '.join(d.describe() for d in sources)}: the dims other "
                               f"than feature do not match ({exc})") from None
    first = max(sources, key=lambda data: data.batch_ndim)
    sizes = [data.feature_dim.size for data in sources]
    total = None if None in sizes else sum(sizes)
    dims = list(rest)
    dims.insert(min(first.feature_dim_axis, len(dims)), feature_dim(total, f"{name}:concat-feature"))
    time_dim = first.time_dim if first.time_dim in dims else None
    return Data(name, tuple(dims), dtype=first.dtype, time_dim=time_dim if time_dim is not None else _AUTO_TIME,
                available_for_inference=first.available_for_inference)


def concat_features(sources: Sequence[Data], template: Data) -> Data:
    """``sources`` concatenated on the feature axis into ``template`` (from ``concat_features_template``)."""
    if len(sources) == 1:
        return sources[0]
    shape = _broadcast_shape(sources, template)
    tensors = []
    for data in sources:
        dims = [data.feature_dim if dim is template.feature_dim else dim for dim in template.dims]
        tensor = aligned_tensor(data, dims)
        own_shape = list(shape)
        own_shape[template.feature_dim_axis] = tf.shape(tensor)[template.feature_dim_axis]
        tensors.append(tf.broadcast_to(tensor, tf.stack(own_shape)))
    tensor = tf.concat(tensors, axis=template.feature_dim_axis)
    return template.with_tensor(tensor, dyn_sizes=merged_dyn_sizes(sources))


def _broadcast_shape(sources: Sequence[Data], template: Data) -> list[Any]:
    """The size of each non-feature axis of ``template``, taken from a source that has it."""
    shape: list[Any] = []
    for dim in template.dims:
        if dim is template.feature_dim:
            shape.append(1)
            continue
        size = dim.size
        for data in sources:
            axis = data.find_axis(dim)
            if axis is not None and data.dims[axis] is not data.feature_dim:
                size = tf.shape(data.tensor)[axis]
                break
        shape.append(size)
    return shape
