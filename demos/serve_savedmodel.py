"""Serve an exported model with plain TensorFlow (no import of this package): load the native op library and
the SavedModel, run ``serving_default`` on the sequences of a RETURNN HDF file, report the frame error.

Usage: python3 serve_savedmodel.py EXPORT_DIR DATA.hdf   (see demos/export-serve.sh)
"""

import glob
import sys

import h5py
import numpy as np
import tensorflow as tf


def read_hdf(path: str) -> tuple[list[np.ndarray], list[np.ndarray]]:
    """Features and labels per sequence of a RETURNN HDF file (``inputs`` and the ``classes`` target)."""
    with h5py.File(path, "r") as f:
        lens = f["seqLengths"][()].reshape(len(f["seqLengths"]), -1)  # [seqs, 1 + targets]: inputs first
        inputs, labels = f["inputs"][()], f["targets/data/classes"][()]
    input_ends, label_ends = np.cumsum(lens[:, 0]), np.cumsum(lens[:, -1])
    features = [inputs[end - n:end] for end, n in zip(input_ends, lens[:, 0])]
    targets = [labels[end - n:end] for end, n in zip(label_ends, lens[:, -1])]
    return features, targets


def main(export_dir: str, data_file: str) -> None:
    for library in glob.glob(f"{export_dir}/native_ops/*.so"):
        tf.load_op_library(library)
    serve = tf.saved_model.load(export_dir).signatures["serving_default"]
    features, targets = read_hdf(data_file)
    lens = np.array([len(x) for x in features], np.int32)
    batch = np.zeros([len(features), lens.max(), features[0].shape[1]], np.float32)
    for i, x in enumerate(features):
        batch[i, :len(x)] = x
    out = serve(data=tf.constant(batch), data_seq_len=tf.constant(lens))
    posteriors = out["output"].numpy()
    wrong = sum(int((posteriors[i, :n].argmax(-1) != targets[i]).sum()) for i, n in enumerate(lens))
    print(f"served {len(lens)} sequences: {wrong}/{lens.sum()} frames wrong ({wrong / lens.sum():.2%})")


if __name__ == "__main__":
    main(*sys.argv[1:3])
