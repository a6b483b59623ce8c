"""Tensor templates: named dimensions (``Dim``), data templates (``Data``) and ``extern_data`` parsing.

Nothing here needs TensorFlow for templates; TF is only touched where a tensor is attached.
RETURNN's names are here too: ``Tensor`` (our ``Data``), ``TensorDict``, ``FeatureDim``, ``SpatialDim``,
``single_step_dim``.
"""

from __future__ import annotations

from returnn.tensor.dim import BATCH, FEATURE, SPATIAL, Dim, FeatureDim, SpatialDim, batch_dim, single_step_dim
from returnn.tensor.data import Data
from returnn.tensor.extern_data import ExternData, seq_len_key
from returnn.tensor.tensor_dict import TensorDict

Tensor = Data  # RETURNN renamed Data to Tensor; one class under both names

__all__ = ["BATCH", "FEATURE", "SPATIAL", "Data", "Dim", "ExternData", "FeatureDim", "SpatialDim", "Tensor",
           "TensorDict", "batch_dim", "seq_len_key", "single_step_dim"]
