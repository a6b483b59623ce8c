"""Per-step reporting during an epoch: a one-line progress bar with ETA on a terminal, log lines otherwise."""

from __future__ import annotations

import sys
import time
from typing import IO, Mapping

from returnn.log import STEP, logger

_BAR_WIDTH = 30


def format_duration(seconds: float) -> str:
    """``3725`` -> ``1:02:05``; under an hour ``m:ss``."""
    seconds = max(0, int(round(seconds)))
    hours, rest = divmod(seconds, 3600)
    minutes, secs = divmod(rest, 60)
    return f"{hours}:{minutes:02d}:{secs:02d}" if hours else f"{minutes}:{secs:02d}"


def format_scores(scores: Mapping[str, float]) -> str:
    """``{"score/output": 0.51234}`` -> ``score/output 0.512``, sorted by name."""
    return ", ".join(f"{name} {value:.4g}" for name, value in sorted(scores.items()))


class StepReporter:
    """Reports steps of one epoch; ``expected_steps`` (may be None) gives the ETA."""

    def __init__(self, prefix: str, *, expected_steps: int | None = None, stream: IO | None = None,
                 use_bar: bool | None = None):
        self.prefix = prefix
        self.expected_steps = expected_steps
        self.stream = stream if stream is not None else sys.stdout
        self.use_bar = (self.stream.isatty() and logger.isEnabledFor(STEP)) if use_bar is None else use_bar
        self.start = time.monotonic()
        self.steps = 0
        self._bar_shown = False

    def step(self, scores: Mapping[str, float], *, num_seqs: int, num_frames: int, step_time: float,
             extra: Mapping[str, str] | None = None) -> None:
        """Report one finished step; ``extra`` adds ``name value`` items to the log line."""
        self.steps += 1
        more = "".join(f", {name} {value}" for name, value in (extra or {}).items())
        line = (f"{self.prefix}, step {self.steps - 1}, {format_scores(scores)}, seqs {num_seqs}, "
                f"frames {num_frames}{more}, {step_time:.3f} sec/step")
        if self.use_bar:
            self._draw_bar(scores)
        else:
            logger.log(STEP, line)

    def finish(self) -> None:
        """End the bar's line (if one was drawn)."""
        if self._bar_shown:
            self.stream.write("\n")
            self.stream.flush()
            self._bar_shown = False

    def _draw_bar(self, scores: Mapping[str, float]) -> None:
        elapsed = time.monotonic() - self.start
        if self.expected_steps:
            fraction = min(1.0, self.steps / self.expected_steps)
            eta = elapsed / self.steps * max(self.expected_steps - self.steps, 0)
            filled = int(round(fraction * _BAR_WIDTH))
            bar = f"[{'#' * filled}{'.' * (_BAR_WIDTH - filled)}] {fraction * 100:5.1f}% ETA {format_duration(eta)}"
        else:
            bar = f"step {self.steps} elapsed {format_duration(elapsed)}"
        self.stream.write(f"\r{self.prefix} {bar} {format_scores(scores)}\033[K")
        self.stream.flush()
        self._bar_shown = True
