"""The worked example of shared/specs/hdf-format.md §10, built with h5py exactly as the spec lists it."""

from __future__ import annotations

import h5py
import numpy as np

EXAMPLE_DATA = np.array([[i + j / 10 for j in range(3)] for i in range(5)], dtype=np.float32)
EXAMPLE_CLASSES = np.array([0, 1, 2, 3, 4, 0], dtype=np.int32)


def write_spec_example(path: str, *, vlen_tags: bool = False, scalar_size: bool = False, bare: bool = False) -> str:
    """The worked example: 2 seqs, dense data dim 3, sparse classes dim 5, lengths not frame-synchronous."""
    with h5py.File(path, "w") as f:
        if not bare:
            for name, value in (("inputPattSize", 3), ("numLabels", 5), ("numSeqs", 2), ("numTimesteps", 5), ("numDims", 1)):
                f.attrs[name] = value
        f.create_dataset("inputs", data=EXAMPLE_DATA)
        f.create_dataset("seqLengths", data=np.array([[2, 4], [3, 2]], dtype=np.int32))
        if vlen_tags:
            f.create_dataset("seqTags", data=np.array(["seq-0", "seq-1"], dtype=object), dtype=h5py.string_dtype("utf-8"))
        else:
            f.create_dataset("seqTags", data=np.array([b"seq-0", b"seq-1"], dtype="S6"))
        f.create_dataset("targets/data/classes", data=EXAMPLE_CLASSES)
        f.create_group("targets/size")
        f["targets/size"].attrs["classes"] = 5 if scalar_size else np.array([5, 1], dtype=np.int64)
        f.create_group("targets/labels")
        if not bare:
            f.create_dataset("targets/labels/classes", data=np.array([b"a", b"b", b"c", b"d", b"e"], dtype="S2"))
            f.create_dataset("labels", shape=(0,), dtype="S5")
    return path
