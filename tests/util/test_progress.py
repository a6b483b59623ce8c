"""Step reporting: log lines without a terminal, a bar with ETA with one."""

from __future__ import annotations

import io

from returnn.log import init_log
from returnn.util.progress import StepReporter, format_duration, format_scores


def test_progress_format_helpers():
    assert format_duration(3725) == "1:02:05" and format_duration(65.4) == "1:05"
    assert format_scores({"z": 1.0, "a": 0.123456}) == "a 0.1235, z 1"


def test_progress_log_lines_at_verbosity_four():
    log = io.StringIO()
    init_log(verbosity=4, stream=log)
    reporter = StepReporter("ep 1 train", use_bar=False)
    reporter.step({"ce": 0.5}, num_seqs=3, num_frames=30, step_time=0.1)
    reporter.step({"ce": 0.25}, num_seqs=2, num_frames=20, step_time=0.1)
    reporter.finish()
    lines = log.getvalue().splitlines()
    assert lines == ["ep 1 train, step 0, ce 0.5, seqs 3, frames 30, 0.100 sec/step",
                     "ep 1 train, step 1, ce 0.25, seqs 2, frames 20, 0.100 sec/step"]
    init_log(verbosity=3, stream=io.StringIO())
    quiet = StepReporter("ep 1 train", use_bar=False)
    quiet.step({"ce": 0.5}, num_seqs=3, num_frames=30, step_time=0.1)


def test_progress_bar_with_eta_on_terminal():
    out = io.StringIO()
    reporter = StepReporter("ep 2 train", expected_steps=4, stream=out, use_bar=True)
    reporter.step({"ce": 1.0}, num_seqs=1, num_frames=1, step_time=0.0)
    reporter.step({"ce": 1.0}, num_seqs=1, num_frames=1, step_time=0.0)
    reporter.finish()
    text = out.getvalue()
    assert "\r" in text and "50.0%" in text and "ETA" in text and text.endswith("\n")
