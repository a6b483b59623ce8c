"""Datasets (sequences of {data key: numpy array}), batching and RETURNN HDF files; numpy + h5py only.

Scripting API as in RETURNN::

    from returnn.datasets import init_dataset
    ds = init_dataset({"class": "HDFDataset", "files": ["train.hdf"]})
    ds.init_seq_order(epoch=1)
    ds.load_seqs(0, 1)
    ds.get_data(0, "data"), ds.get_tag(0), ds.get_seq_length(0)["data"]
"""

from __future__ import annotations

from returnn.datasets.base import Dataset, get_dataset_class, init_dataset, register_dataset
from returnn.datasets.batching import Batch, BatchGenerator, batch_generator_from_config
from returnn.datasets.hdf import HDFDataset
from returnn.datasets.hdf_writer import SimpleHDFWriter, dump_dataset
from returnn.datasets.generating import (
    CopyTaskDataset,
    DatasetSeq,
    DummyDataset,
    GeneratingDataset,
    ReverseTaskDataset,
    SortTaskDataset,
    StaticDataset,
    SyntheticSpeechDataset,
    Task12AXDataset,
)

__all__ = [
    "Batch",
    "BatchGenerator",
    "CopyTaskDataset",
    "Dataset",
    "DatasetSeq",
    "DummyDataset",
    "GeneratingDataset",
    "HDFDataset",
    "ReverseTaskDataset",
    "SimpleHDFWriter",
    "SortTaskDataset",
    "StaticDataset",
    "SyntheticSpeechDataset",
    "Task12AXDataset",
    "batch_generator_from_config",
    "dump_dataset",
    "get_dataset_class",
    "init_dataset",
    "register_dataset",
]
