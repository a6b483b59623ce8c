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


def test_dataset_class_defined_in_python_config(tmp_path):
    config = tmp_path / "own.config"
    config.write_text(
        "#!rnn.py\n"
        "import numpy\n"
        "from returnn.datasets import GeneratingDataset, DatasetSeq\n"
        "class CountDataset(GeneratingDataset):\n"
        "    def __init__(self, **kwargs):\n"
        "        super().__init__(input_dim=1, output_dim=3, num_seqs=4, **kwargs)\n"
        "    def generate_seq(self, seq_idx):\n"
        "        n = seq_idx + 1\n"
        "        return DatasetSeq(seq_idx, numpy.ones((n, 1)), numpy.arange(n) % 3)\n"
        "train = {'class': CountDataset, 'seq_ordering': 'reverse'}\n"
        "dev = {'class': 'CountDataset'}\n"
    )
    train = dataset_from_arg(str(config))
    train.init_seq_order(epoch=1)
    assert train.num_seqs == 4 and train.get_data(0, "classes").tolist() == [0, 1, 2, 0]
    dev = dataset_from_arg(str(config), dataset_key="dev")
    dev.init_seq_order(epoch=1)
    assert dev.get_seq_length(1) == {"data": 2, "classes": 2}
