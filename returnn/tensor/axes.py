"""Resolve RETURNN's axis descriptions ("B", "T", "F", "spatial", "stag:name", a Dim, an int) to axes."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from returnn.errors import LayerConfigError
from returnn.tensor.dim import Dim

if TYPE_CHECKING:
    from returnn.tensor.data import Data

_NAMED = {
    "b": "batch", "batch": "batch",
    "t": "time", "time": "time",
    "t?": "time?",
    "f": "feature", "feature": "feature",
    "spatial": "spatial",
    "except_time": "except_time",
    "except_batch": "except_batch",
    "static": "static",
    "dynamic": "dynamic",
    "*": "all", "all": "all",
}


def resolve_axes(data: Data, desc: Any) -> list[int]:
    """All axes (counted with the batch axis) that ``desc`` names in ``data``; may be empty for "T?"."""
    if isinstance(desc, (list, tuple)):
        axes: list[int] = []
        for item in desc:
            axes.extend(a for a in resolve_axes(data, item) if a not in axes)
        return axes
    if isinstance(desc, Dim):
        axis = data.find_axis(desc)
        if axis is None:
            raise LayerConfigError(f"axis {desc.describe()}: not a dim of {data.describe()}")
        return [axis]
    if isinstance(desc, int) and not isinstance(desc, bool):
        if not -data.batch_ndim <= desc < data.batch_ndim:
            raise LayerConfigError(f"axis {desc}: out of range for {data.describe()}")
        return [desc % data.batch_ndim]
    if isinstance(desc, str):
        return _resolve_str(data, desc)
    raise LayerConfigError(f"axis {desc!r}: expected a name like 'T', 'F', 'B', 'spatial', a Dim or an int")


def resolve_axis(data: Data, desc: Any) -> int:
    """The single axis ``desc`` names in ``data``; an error when it names none or several."""
    axes = resolve_axes(data, desc)
    if len(axes) != 1:
        found = "no axis" if not axes else f"{len(axes)} axes"
        raise LayerConfigError(f"axis {desc!r}: expected exactly one axis in {data.describe()}, found {found}")
    return axes[0]


def _resolve_str(data: Data, desc: str) -> list[int]:
    """Named axis groups and ``S:i`` / ``stag:name`` / plain dim names."""
    key = _NAMED.get(desc.lower())
    if key is not None:
        return _named_group(data, desc, key)
    if desc.lower().startswith("s:"):
        spatial = _spatial_axes(data)
        idx = _parse_index(desc)
        if not -len(spatial) <= idx < len(spatial):
            raise LayerConfigError(f"axis {desc!r}: {data.describe()} has {len(spatial)} spatial axes")
        return [spatial[idx]]
    name = desc[len("stag:"):] if desc.startswith("stag:") else desc
    hits = [i for i, dim in enumerate(data.dims) if dim.name == name]
    if not hits:
        raise LayerConfigError(
            f"axis {desc!r}: unknown; use 'B', 'T', 'F', 'spatial', 'S:<i>', 'except_time', 'stag:<dim name>'; "
            f"dims of {data.describe()}")
    return hits


def _parse_index(desc: str) -> int:
    """The integer after the colon in ``S:1``."""
    try:
        return int(desc.split(":", 1)[1])
    except ValueError:
        raise LayerConfigError(f"axis {desc!r}: expected 'S:<int>'") from None


def _spatial_axes(data: Data) -> list[int]:
    """Axes that are neither batch nor feature (time included), in order."""
    return [i for i in range(data.batch_ndim) if i != data.batch_dim_axis and i != data.feature_dim_axis]


def _named_group(data: Data, desc: str, key: str) -> list[int]:
    """Axes for one of the named groups in ``_NAMED``."""
    if key == "batch" or key == "time" or key == "feature":
        axis = {"batch": data.batch_dim_axis, "time": data.time_dim_axis, "feature": data.feature_dim_axis}[key]
        if axis is None:
            raise LayerConfigError(f"axis {desc!r}: {data.describe()} has no {key} axis")
        return [axis]
    if key == "time?":
        return [] if data.time_dim_axis is None else [data.time_dim_axis]
    if key == "spatial":
        return _spatial_axes(data)
    if key == "except_time":
        return [i for i in range(data.batch_ndim) if i not in (data.batch_dim_axis, data.time_dim_axis)]
    if key == "except_batch":
        return [i for i in range(data.batch_ndim) if i != data.batch_dim_axis]
    if key == "static":
        return [i for i, dim in enumerate(data.dims) if dim.size is not None]
    if key == "dynamic":
        return [i for i, dim in enumerate(data.dims) if dim.size is None and not dim.is_batch]
    return list(range(data.batch_ndim))
