"""Datasets (sequences of {data key: numpy array}), batching and RETURNN HDF files; numpy + h5py only.

Scripting API as in RETURNN::

    from returnn.datasets import init_dataset
    ds = init_dataset({"class": "HDFDataset", "files": ["train.hdf"]})
    ds.init_seq_order(epoch=1)
    ds.load_seqs(0, 1)
    ds.get_data(0, "data"), ds.get_tag(0), ds.get_seq_length(0)["data"]
"""

from __future__ import annotations

from returnn.datasets.base import (
    Dataset,
    DatasetSeq,
    get_dataset_class,
    init_dataset,
    init_dataset_from_config,
    register_dataset,
)
from returnn.datasets.batching import Batch, BatchGenerator, batch_generator_from_config
from returnn.datasets.generating import (
    CopyTaskDataset,
    DummyDataset,
    GeneratingDataset,
    ReverseTaskDataset,
    SortTaskDataset,
    StaticDataset,
    SyntheticSpeechDataset,
    Task12AXDataset,
    TaskNumberBaseConvertDataset,
)
from returnn.datasets.hdf import HDFDataset
from returnn.datasets.hdf_writer import SimpleHDFWriter, dump_dataset
from returnn.datasets.memory_tasks import TaskXmlModelingDataset
from returnn.datasets.meta import ConcatDataset, MetaDataset
from returnn.datasets.text import LmDataset, TranslationDataset

__all__ = [
    "Batch",
    "BatchGenerator",
    "ConcatDataset",
    "CopyTaskDataset",
    "Dataset",
    "DatasetSeq",
    "DummyDataset",
    "GeneratingDataset",
    "HDFDataset",
    "LmDataset",
    "MetaDataset",
    "ReverseTaskDataset",
    "SimpleHDFWriter",
    "SortTaskDataset",
    "StaticDataset",
    "SyntheticSpeechDataset",
    "Task12AXDataset",
    "TaskNumberBaseConvertDataset",
    "TaskXmlModelingDataset",
    "TranslationDataset",
    "batch_generator_from_config",
    "dump_dataset",
    "get_dataset_class",
    "init_dataset",
    "init_dataset_from_config",
    "register_dataset",
]
