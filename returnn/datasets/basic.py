"""RETURNN's import path ``returnn.datasets.basic`` (configs import Dataset, DatasetSeq, init_dataset from here)."""

from __future__ import annotations

from returnn.datasets.base import Dataset, DatasetSeq, get_dataset_class, init_dataset, register_dataset

__all__ = ["Dataset", "DatasetSeq", "get_dataset_class", "init_dataset", "register_dataset"]
