"""TensorBoard scalars: event files that TensorBoard's scalar plugin reads."""

from __future__ import annotations

import glob

import tensorflow as tf
from tensorflow.core.util import event_pb2

from returnn.tf.summaries import ScalarWriter


def read_scalars(log_dir: str) -> list[tuple[int, str, float, str]]:
    events = []
    for path in glob.glob(f"{log_dir}/events.out.tfevents.*"):
        for record in tf.data.TFRecordDataset(path):
            event = event_pb2.Event.FromString(record.numpy())
            for value in event.summary.value:
                events.append((event.step, value.tag, float(tf.make_ndarray(value.tensor)),
                               value.metadata.plugin_data.plugin_name))
    return sorted(events)


def test_summaries_scalars_with_steps_and_plugin(tmp_path):
    writer = ScalarWriter(str(tmp_path))
    writer.write(3, {"train/cost:output": 0.5, "train/grad_norm": 2.0})
    writer.write(4, {"train/cost:output": 0.25, "train/grad_norm": 1.0})
    writer.write(1, {"epoch/dev_score": 0.75})
    writer.flush()
    events = read_scalars(str(tmp_path))
    assert [(s, t, v) for s, t, v, _ in events] == [
        (1, "epoch/dev_score", 0.75), (3, "train/cost:output", 0.5), (3, "train/grad_norm", 2.0),
        (4, "train/cost:output", 0.25), (4, "train/grad_norm", 1.0)]
    assert {plugin for *_, plugin in events} == {"scalars"}
    assert len(writer._write_fns) == 2  # one traced writer per set of names



def test_summaries_trace_without_autograph(tmp_path):
    """Autograph converts a function into a temp .py file (removed only at a clean exit: a killed run leaves it);
    the write function has no tensor control flow to convert. (Autograph caches by code object, so a temp dir
    check would pass once any earlier test traced it: the flag is checked instead.)"""
    writer = ScalarWriter(str(tmp_path))
    write_fn = writer._make_write_fn(("a",))
    assert write_fn._autograph is False
