"""TensorBoard scalars per step and per epoch, written with TensorFlow's core summary ops.

No ``tensorboard`` package is needed to write them. Per-step scalars go through one ``tf.function``
(traced once per set of names), so a step costs one call instead of an eager op per scalar.
"""

from __future__ import annotations

from typing import Mapping, Sequence

import tensorflow as tf
from tensorflow.core.framework import summary_pb2

_SCALAR_METADATA = summary_pb2.SummaryMetadata(plugin_data=summary_pb2.SummaryMetadata.PluginData(plugin_name="scalars"))


class ScalarWriter:
    """Scalars into an event file in ``log_dir``."""

    def __init__(self, log_dir: str):
        self.writer = tf.summary.create_file_writer(log_dir)
        self._write_fns: dict[tuple[str, ...], tf.types.experimental.GenericFunction] = {}

    def write(self, step: int, values: Mapping[str, float]) -> None:
        """One scalar per name at ``step``."""
        names = tuple(values)
        if names not in self._write_fns:
            self._write_fns[names] = self._make_write_fn(names)
        self._write_fns[names](tf.constant(step, tf.int64), tf.constant([float(values[n]) for n in names], tf.float32))

    def flush(self) -> None:
        """Make everything written so far visible to readers."""
        self.writer.flush()

    def _make_write_fn(self, names: Sequence[str]):
        writer = self.writer

        def write(step, values):
            with writer.as_default(step=step):
                for i, name in enumerate(names):
                    tf.summary.write(name, values[i], metadata=_SCALAR_METADATA)

        return tf.function(write, autograph=False)  # no tensor control flow; autograph leaves temp .py files
