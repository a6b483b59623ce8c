#!/usr/bin/env python3
"""Training speed of the engine vs. a plain TensorFlow loop on the same model and the same batches.

The engine path is what ``task = "train"`` runs per step (dataset, batching thread, feed conversion,
score bookkeeping, logging, TensorBoard scalars); the plain loop runs the same network and updater on
batches prepared in memory beforehand, so the difference is the engine's overhead.
Last line: ``frames_per_sec=<engine figure>``.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import tensorflow as tf  # noqa: E402

from returnn.config import Config  # noqa: E402
from returnn.log import init_log  # noqa: E402
from returnn.testing import blstm_net_dict  # noqa: E402
from returnn.tf.engine import Engine  # noqa: E402
from returnn.tf.steps import make_train_step  # noqa: E402


def make_config(args: argparse.Namespace, model_dir: str) -> Config:
    """A fixed model: ``layers`` bidirectional LSTM layers on synthetic frames, softmax with CE."""
    network = blstm_net_dict(layers=args.layers, n_out=args.units, unit=args.unit)
    return Config({
        "train": {"class": "DummyDataset", "input_dim": args.n_in, "output_dim": args.n_classes,
                  "num_seqs": args.seqs_per_batch * args.steps, "seq_len": args.time},
        "num_inputs": args.n_in, "num_outputs": args.n_classes,
        "batch_size": args.seqs_per_batch * args.time, "max_seqs": args.seqs_per_batch,
        "network": network, "adam": True, "learning_rate": 1e-3,
        "model": os.path.join(model_dir, "net"), "log_verbosity": 1, "tensorboard": args.tensorboard,
    })


def time_engine(engine: Engine, repeats: int) -> tuple[float, int, int]:
    """Seconds, seqs and frames of ``repeats`` engine epochs after one warm-up epoch."""
    dataset = engine.dataset("train", train=True)
    step = make_train_step(engine.network, engine.updater)
    engine._run_train_epoch(1, dataset, step)
    start = time.perf_counter()
    for epoch in range(2, repeats + 2):
        engine._run_train_epoch(epoch, dataset, step)
    seconds = time.perf_counter() - start
    return seconds, repeats * dataset.num_seqs, repeats * dataset.get_num_timesteps()


def time_plain_loop(engine: Engine, repeats: int) -> float:
    """Seconds of ``repeats`` passes over the same batches, fed from memory to a bare tf.function step."""
    dataset = engine.dataset("train", train=True)
    step = make_train_step(engine.network, engine.updater)
    with engine._batches(dataset, 1, train=True) as batches:
        feeds = [{k: tf.constant(v) for k, v in engine.network.feed(b, with_targets=True).items()} for b in batches]
    for feed in feeds:
        step(feed)
    start = time.perf_counter()
    for _ in range(repeats):
        for feed in feeds:
            step(feed)
    return time.perf_counter() - start


def main() -> None:
    """Print engine and plain-loop figures; the last line is the engine's frames per second."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--unit", default="nativelstm")
    parser.add_argument("--layers", type=int, default=2)
    parser.add_argument("--units", type=int, default=128)
    parser.add_argument("--n_in", type=int, default=40)
    parser.add_argument("--n_classes", type=int, default=100)
    parser.add_argument("--seqs_per_batch", type=int, default=20)
    parser.add_argument("--time", type=int, default=100)
    parser.add_argument("--steps", type=int, default=20, help="steps per timed pass")
    parser.add_argument("--repeats", type=int, default=3, help="timed passes")
    parser.add_argument("--no-tensorboard", dest="tensorboard", action="store_false", help="engine without per-step scalars")
    args = parser.parse_args()
    init_log(verbosity=1)
    with tempfile.TemporaryDirectory() as model_dir:
        engine = Engine(make_config(args, model_dir))
        engine.init_train()
        engine_sec, seqs, frames = time_engine(engine, args.repeats)
        plain_sec = time_plain_loop(engine, args.repeats)
    steps = args.steps * args.repeats
    print(f"model: {args.layers}x BLSTM {args.units} ({args.unit}), {args.seqs_per_batch} seqs x {args.time} frames per step")
    print(f"engine: {engine_sec / steps * 1000:.1f} ms/step, seqs_per_sec={seqs / engine_sec:.1f}, frames/s {frames / engine_sec:.0f}")
    print(f"plain tf loop: {plain_sec / steps * 1000:.1f} ms/step, seqs_per_sec={seqs / plain_sec:.1f}, frames/s {frames / plain_sec:.0f}")
    print(f"engine overhead: {(engine_sec / plain_sec - 1) * 100:+.1f}%")
    print(f"frames_per_sec={frames / engine_sec:.1f}")


if __name__ == "__main__":
    main()
