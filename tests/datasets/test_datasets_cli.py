"""dataset_from_arg: config file, dict literal, HDF path."""

from __future__ import annotations

import pytest

from returnn.datasets import HDFDataset, Task12AXDataset
from returnn.datasets.cli import dataset_from_arg
from returnn.errors import DatasetError


def test_dataset_from_config_literal_and_hdf(tmp_path, spec_example):
    config = tmp_path / "a.config"
    config.write_text("#!rnn.py\ndev = {'class': 'Task12AXDataset', 'num_seqs': 3}\n")
    assert isinstance(dataset_from_arg(str(config), dataset_key="dev"), Task12AXDataset)
    assert isinstance(dataset_from_arg("{'class': 'Task12AXDataset', 'num_seqs': 3}"), Task12AXDataset)
    assert isinstance(dataset_from_arg(spec_example), HDFDataset)
    with pytest.raises(DatasetError, match="no dataset under the key 'train'"):
        dataset_from_arg(str(config))
