"""The ``tf.function`` steps (train, eval, forward) with dynamic-shape signatures, and score bookkeeping.

Each step is traced once: batch and time dims are ``None`` in the input signature, so batches of any
shape reuse the same graph. A retrace (which only a changed signature could cause) is logged.
"""

from __future__ import annotations

import math
from typing import Any, Callable, Mapping, Sequence

import tensorflow as tf

from returnn.log import logger
from returnn.tf.distributed import replica_feed
from returnn.tf.network import Network
from returnn.tf.updater import Updater


def make_train_step(network: Network, updater: Updater, *, jit_compile: bool = False,
                    strategy: tf.distribute.Strategy | None = None) -> Callable:
    """``step(network.feed(batch, with_targets=True)) -> ({loss name: (loss, error, frames)}, total, grad norm)``,
    updating params. With a ``strategy``, the replicas share the batch (see ``make_distributed_train_step``)."""
    if strategy is not None:
        return make_distributed_train_step(network, updater, strategy)
    signature = network.input_signature(with_targets=True)
    variables = updater.variables_to_train

    def train_step(feed):
        with tf.GradientTape() as tape:
            outputs = network(feed, train=True)
            values = network.loss_values(outputs, feed)
            total = network.total_loss(values)
        grads = tape.gradient(total, variables)
        grad_norm = updater.apply_gradients(grads)
        return _loss_tuple(values), total, grad_norm

    return tf.function(train_step, input_signature=[signature], jit_compile=jit_compile or None, autograph=False)


def make_distributed_train_step(network: Network, updater: Updater, strategy: tf.distribute.Strategy) -> Callable:
    """The train step under ``strategy.run``: each replica takes its sequences of the batch, the strategy sums the
    gradients (and the loss sums and frame counts) over the replicas, and every replica applies the same update to
    its copy of the params. Returns what ``make_train_step`` returns, over the whole batch."""
    signature = network.input_signature(with_targets=True)
    templates = {key: network.extern_data[key] for key in signature if ":" not in key}
    variables = updater.variables_to_train
    sum_op = tf.distribute.ReduceOp.SUM

    def replica_step(feed):
        ctx = tf.distribute.get_replica_context()
        local = replica_feed(feed, templates)
        with tf.GradientTape() as tape:
            outputs = network(local, train=True)
            values = network.loss_values(outputs, local)
            frames = {key: tf.cast(value.num_frames, tf.float32) for key, value in values.items()}
            share = network.total_loss(values, global_frames=ctx.all_reduce(sum_op, frames),
                                       num_replicas=ctx.num_replicas_in_sync)
        grads = tape.gradient(share, variables)
        present = [i for i, g in enumerate(grads) if g is not None]
        sums = {name: (loss * frames, error * frames, frames)
                for name, (loss, error, frames) in _loss_tuple(values).items()}
        summed_grads, sums, total = ctx.all_reduce(
            sum_op, ([tf.convert_to_tensor(grads[i]) for i in present], sums, share))
        all_grads = [None] * len(grads)
        for i, grad in zip(present, summed_grads):
            all_grads[i] = grad
        grad_norm = updater.apply_gradients(all_grads)
        losses = {}
        for name, (loss_sum, error_sum, frames) in sums.items():
            error = tf.where(error_sum < 0, -1.0, error_sum / tf.maximum(frames, 1.0))  # -1: the loss has no error
            losses[name] = (loss_sum / tf.maximum(frames, 1.0), error, frames)
        return losses, total, grad_norm

    def train_step(feed):
        results = strategy.run(replica_step, args=(feed,))
        return tf.nest.map_structure(lambda value: strategy.experimental_local_results(value)[0], results)

    return tf.function(train_step, input_signature=[signature], autograph=False)


def make_eval_step(network: Network) -> Callable:
    """``step(network.feed(batch, with_targets=True)) -> {loss name: (loss, error, frames)}``, no updates or dropout."""
    signature = network.input_signature(with_targets=True)

    def eval_step(feed):
        outputs = network(feed, train=False)
        return _loss_tuple(network.loss_values(outputs, feed))

    return tf.function(eval_step, input_signature=[signature], autograph=False)


def _loss_tuple(values: Mapping[str, Any]) -> dict[str, tuple]:
    result = {}
    for name, value in values.items():
        error = value.error if value.error is not None else tf.constant(-1.0)
        result[name] = (tf.cast(value.loss, tf.float32), tf.cast(error, tf.float32), tf.cast(value.num_frames, tf.float32))
    return result


def warn_on_retrace(step: Callable, name: str) -> None:
    """Log a warning when a step was traced more than once (a retrace costs seconds per batch shape)."""
    count = step.experimental_get_tracing_count()
    if count > 1:
        logger.warning(f"{name} step was traced {count} times; batch shapes should not cause retracing")


class ScoreAccumulator:
    """Frame-weighted means of each loss's score and error over the batches of an epoch."""

    def __init__(self):
        self.sums: dict[str, list[float]] = {}

    def add(self, losses: Mapping[str, Sequence]) -> dict[str, float]:
        """Add one step's ``{name: (loss, error, frames)}``; returns this step's scores for reporting."""
        step_scores = {}
        for name, (loss, error, frames) in losses.items():
            loss, error, frames = float(loss), float(error), float(frames)
            acc = self.sums.setdefault(name, [0.0, 0.0, 0.0, 0.0])
            acc[0] += loss * frames
            acc[2] += frames
            if error >= 0:
                acc[1] += error * frames
                acc[3] += frames
                step_scores[f"error:{name}"] = error
            step_scores[f"cost:{name}"] = loss
        return step_scores

    def scores(self) -> dict[str, float]:
        """``{name: mean score}``."""
        return {name: acc[0] / acc[2] if acc[2] else math.nan for name, acc in self.sums.items()}

    def errors(self) -> dict[str, float]:
        """``{name: mean error}`` for losses that have an error measure."""
        return {name: acc[1] / acc[3] for name, acc in self.sums.items() if acc[3]}

    def epoch_error_dict(self, prefix: str) -> dict[str, dict[str, float]]:
        """RETURNN's shape for the learning-rate file: ``{"dev_score": {"cost:output": s}, "dev_error": {...}}``."""
        result = {f"{prefix}_score": {f"cost:{k}": v for k, v in self.scores().items()}}
        errors = self.errors()
        if errors:
            result[f"{prefix}_error"] = {f"error:{k}": v for k, v in errors.items()}
        return result
