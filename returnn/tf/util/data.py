"""RETURNN's ``returnn.tf.util.data``: the template and dim names older configs import, mapped to ours."""

from __future__ import annotations

from returnn.tensor import Data, Dim, FeatureDim, SpatialDim, Tensor, TensorDict, batch_dim, single_step_dim
from returnn.tensor.dim import SPATIAL


def DimensionTag(*, kind: str = SPATIAL, description: str, dimension: int | None = None) -> Dim:  # noqa: N802
    """RETURNN's older dim constructor: ``DimensionTag(kind=DimensionTag.Types.Spatial, description="time")``."""
    return Dim(dimension, description, kind=kind)


DimensionTag.Types = Dim.Types

__all__ = ["Data", "Dim", "DimensionTag", "FeatureDim", "SpatialDim", "Tensor", "TensorDict", "batch_dim",
           "single_step_dim"]
