"""Aligning several ``Data`` to common dims: broadcasting and concatenation on the feature axis."""

from __future__ import annotations

from typing import Any, Sequence

import tensorflow as tf

from returnn.errors import LayerConfigError
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
    """Template of ``sources`` concatenated on the feature axis, in the first source's axis order."""
    if not sources:
        raise LayerConfigError("no sources to concatenate")
    if len(sources) == 1:
        return sources[0]
    first = sources[0]
    for data in sources:
        if data.sparse or data.feature_dim is None:
            raise LayerConfigError(f"cannot concatenate {data.describe()} on the feature axis: it has none")
        rest = [dim for dim in data.dims if dim is not data.feature_dim]
        first_rest = [dim for dim in first.dims if dim is not first.feature_dim]
        idxs = _match_dims(rest, first_rest)
        if None in idxs or len(rest) != len(first_rest):
            raise LayerConfigError(
                f"cannot concatenate {data.describe()} with {first.describe()}: dims other than feature differ")
    sizes = [data.feature_dim.size for data in sources]
    total = None if None in sizes else sum(sizes)
    return first.copy_template(name).with_feature_dim(feature_dim(total, f"{name}:concat-feature"))


def concat_features(sources: Sequence[Data], template: Data) -> Data:
    """``sources`` concatenated on the feature axis into ``template`` (from ``concat_features_template``)."""
    if len(sources) == 1:
        return sources[0]
    tensors = []
    for data in sources:
        dims = [data.feature_dim if dim is template.feature_dim else dim for dim in template.dims]
        tensors.append(aligned_tensor(data, dims))
    tensor = tf.concat(tensors, axis=template.feature_dim_axis)
    return template.with_tensor(tensor, dyn_sizes=merged_dyn_sizes(sources))
