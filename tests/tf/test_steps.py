"""Step helpers: feeding batches in the signature's dtypes, and frame-weighted score means."""

from __future__ import annotations

import numpy as np
import pytest
import tensorflow as tf

from returnn.datasets.batching import Batch
from returnn.errors import DatasetError
from returnn.tf.steps import ScoreAccumulator, feed_for_signature


def make_batch() -> Batch:
    return Batch(data={"data": np.ones((2, 3, 4), np.float64), "classes": np.zeros((2, 3), np.int64)},
                 seq_lens={"data": np.array([3, 2]), "classes": np.array([3, 2])},
                 seq_tags=["a", "b"], seq_idx=np.array([0, 1]), chunk_start={})


def test_steps_feed_casts_to_signature_dtypes():
    signature = {"data": tf.TensorSpec([None, None, 4], tf.float32), "data:seq_len": tf.TensorSpec([None], tf.int32),
                 "classes": tf.TensorSpec([None, None], tf.int32)}
    feed = feed_for_signature(make_batch(), signature)
    assert feed["data"].dtype == np.float32 and feed["classes"].dtype == np.int32
    assert feed["data:seq_len"].tolist() == [3, 2]


def test_steps_feed_missing_key_names_keys():
    with pytest.raises(DatasetError, match="no data key 'orth'.*it has: data, classes"):
        feed_for_signature(make_batch(), {"orth": tf.TensorSpec([None, None], tf.int32)})


def test_steps_scores_are_frame_weighted_and_shaped_like_returnn():
    acc = ScoreAccumulator()
    acc.add({"output": (1.0, 0.5, 10.0), "ctc": (4.0, -1.0, 10.0)})
    step = acc.add({"output": (2.0, 0.0, 30.0), "ctc": (2.0, -1.0, 30.0)})
    assert step == {"cost:output": 2.0, "error:output": 0.0, "cost:ctc": 2.0}
    assert acc.scores() == {"output": pytest.approx(1.75), "ctc": pytest.approx(2.5)}
    assert acc.errors() == {"output": pytest.approx(0.125)}
    assert acc.epoch_error_dict("dev") == {"dev_score": {"cost:output": pytest.approx(1.75), "cost:ctc": pytest.approx(2.5)},
                                           "dev_error": {"error:output": pytest.approx(0.125)}}
