"""Task forward: one layer's output for every sequence of a dataset, written to a RETURNN HDF file."""

from __future__ import annotations

import os

import numpy as np
import tensorflow as tf

from returnn.datasets import Dataset, SimpleHDFWriter, batch_generator_from_config
from returnn.errors import ConfigError
from returnn.log import DETAIL, logger
from returnn.tensor.extern_data import seq_len_key
from returnn.tf.network import Network
from returnn.tf.steps import warn_on_retrace
from returnn.util.atomic import atomic_path


def forward_to_hdf(network: Network, dataset: Dataset, config, *, layer: str, output_file: str, epoch: int = 1) -> int:
    """Write ``layer``'s output per sequence (tags and real lengths kept) to ``output_file``; returns #seqs.

    The file appears only when complete: it is written under a temporary name and renamed at the end.
    """
    if layer not in network.layers:
        raise ConfigError(f'config key "forward_output_layer": no layer {layer!r}; layers: {", ".join(network.layers)}')
    template = network.templates[layer]
    if template.batch_dim_axis is None:
        raise ConfigError(f'config key "forward_output_layer": layer {layer!r} has no batch axis ({template.describe()})')
    beam_size = template.beam.beam_size if template.beam is not None else None
    forward = network.forward_function([layer])
    num_seqs = 0
    with atomic_path(output_file) as tmp_path:
        os.unlink(tmp_path)  # the writer creates the file itself
        writer = SimpleHDFWriter(tmp_path, dim=template.dim if not template.sparse else template.sparse_dim.size,
                                 ndim=1 if template.sparse or template.feature_dim is None else 2)
        try:
            with batch_generator_from_config(dataset, config, epoch=epoch, train=False) as batches:
                for batch in batches:
                    out = forward(network.feed(batch))
                    values, lens = _batch_major(template, out[layer]), out.get(seq_len_key(layer))
                    lens = np.full([values.shape[0]], values.shape[1], np.int32) if lens is None else lens.numpy()
                    if beam_size:  # a search's hypotheses, best first per sequence: the best of each
                        values, lens = values[::beam_size], lens[::beam_size]
                    writer.insert_batch(values, lens, batch.seq_tags)
                    num_seqs += len(batch.seq_tags)
            writer.close()
        except BaseException:
            writer.abort()
            raise
    warn_on_retrace(forward, "forward")
    logger.log(DETAIL, f"forward: wrote {num_seqs} sequences of layer {layer!r} to {output_file}")
    return num_seqs


def _batch_major(template, tensor: tf.Tensor) -> np.ndarray:
    """The output as [B, T, ...] numpy (time-major outputs transposed)."""
    values = tensor.numpy()
    b, t = template.batch_dim_axis, template.time_dim_axis
    if t is None:
        return np.expand_dims(np.moveaxis(values, b, 0), 1)
    order = [b, t] + [i for i in range(values.ndim) if i not in (b, t)]
    return np.transpose(values, order)
