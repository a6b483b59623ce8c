"""Score bookkeeping of the steps: frame-weighted means in the shape RETURNN writes."""

from __future__ import annotations

import pytest

from returnn.tf.steps import ScoreAccumulator


def test_steps_scores_are_frame_weighted_and_shaped_like_returnn():
    acc = ScoreAccumulator()
    acc.add({"output": (1.0, 0.5, 10.0), "ctc": (4.0, -1.0, 10.0)})
    step = acc.add({"output": (2.0, 0.0, 30.0), "ctc": (2.0, -1.0, 30.0)})
    assert step == {"cost:output": 2.0, "error:output": 0.0, "cost:ctc": 2.0}
    assert acc.scores() == {"output": pytest.approx(1.75), "ctc": pytest.approx(2.5)}
    assert acc.errors() == {"output": pytest.approx(0.125)}
    assert acc.epoch_error_dict("dev") == {"dev_score": {"cost:output": pytest.approx(1.75), "cost:ctc": pytest.approx(2.5)},
                                           "dev_error": {"error:output": pytest.approx(0.125)}}
