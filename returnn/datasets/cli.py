"""Dataset arguments of the command-line tools: a config file, a dataset dict literal, or HDF file paths."""

from __future__ import annotations

import os
from typing import Any

from returnn.config import Config
from returnn.datasets.base import Dataset, init_dataset
from returnn.errors import DatasetError


def _is_config_file(arg: str) -> bool:
    """An existing file that is not an HDF file (HDF files start with the HDF5 signature)."""
    if not os.path.isfile(arg):
        return False
    with open(arg, "rb") as f:
        return f.read(8) != b"\x89HDF\r\n\x1a\n"


def dataset_from_arg(arg: str, *, dataset_key: str = "train", config: Any = None) -> Dataset:
    """Build the dataset a tool argument names: ``dataset_key`` of a config file, a dict literal, or HDF paths."""
    if _is_config_file(arg):
        config = Config()
        config.load_file(arg)
        if not config.has(dataset_key):
            raise DatasetError(f"config {arg!r} has no dataset under the key {dataset_key!r}")
        return init_dataset(config.typed_value(dataset_key), config=config)
    return init_dataset(arg, config=config)
