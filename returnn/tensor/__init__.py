"""Tensor templates: named dimensions (``Dim``), data templates (``Data``) and ``extern_data`` parsing.

Nothing here needs TensorFlow for templates; TF is only touched where a tensor is attached.
"""

from __future__ import annotations

from returnn.tensor.dim import BATCH, FEATURE, SPATIAL, Dim, batch_dim
from returnn.tensor.data import Data
from returnn.tensor.extern_data import ExternData, seq_len_key

__all__ = ["BATCH", "FEATURE", "SPATIAL", "Data", "Dim", "ExternData", "batch_dim", "seq_len_key"]
