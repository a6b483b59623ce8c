"""TensorBoard scalars of the ``Engine``: per step (every ``tensorboard_step_interval``) and per epoch."""

from __future__ import annotations

import os

import numpy as np

from returnn.tf.summaries import ScalarWriter


class EngineSummaries:
    """Mixin of ``Engine``: uses its ``config``, ``model``, ``is_chief``, ``updater``, ``_summary_writer``."""

    def _writer(self) -> ScalarWriter | None:
        if self._summary_writer is None and self.model and self.is_chief and self.config.bool("tensorboard", True):
            log_dir = self.config.value("tf_log_dir") or os.path.join(os.path.dirname(os.path.abspath(self.model)), "tensorboard")
            self._summary_writer = ScalarWriter(log_dir)
        return self._summary_writer

    def _write_step_summary(self, step_scores: dict[str, float], grad_norm: float) -> None:
        writer = self._writer()
        step = int(self.updater.global_train_step.numpy())
        if writer is not None and step % self.config.int("tensorboard_step_interval", 10) == 0:
            values = {f"train/{name}": value for name, value in step_scores.items()}
            values["train/grad_norm"] = grad_norm
            values["train/learning_rate"] = float(self.updater.learning_rate.numpy())
            writer.write(step, values)

    def _write_epoch_summary(self, epoch: int, learning_rate: float, errors: dict) -> None:
        writer = self._writer()
        if writer is not None:
            values = {"epoch/learning_rate": learning_rate}
            values.update({f"epoch/{name}": value for name, value in flat_errors(errors).items()})
            writer.write(epoch, values)
            writer.flush()


def flat_errors(errors: dict) -> dict[str, float]:
    """``{"dev_score": {"cost:output": 1.0}}`` -> ``{"dev_score_output": 1.0}`` for summaries."""
    flat = {}
    for key, values in errors.items():
        for sub_key, value in values.items():
            flat[f"{key}_{sub_key.split(':', 1)[-1]}" if len(values) > 1 else key] = float(np.float64(value))
    return flat
