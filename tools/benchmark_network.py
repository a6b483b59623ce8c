#!/usr/bin/env python3
"""Time a bidirectional LSTM network (as in RETURNN's docs): forward and train step under tf.function.

Usage: tools/benchmark_network.py [--units lstm,lstmblock,standardlstm] [--layers 3] [--n-out 128]
                                  [--n-in 40] [--classes 100] [--batch 16] [--time 100] [--steps 5]

Prints per unit the seconds per batch and the frames (valid input frames) per second.
"""

from __future__ import annotations

import argparse
import os
import sys
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import tensorflow as tf  # noqa: E402

from returnn.testing import blstm_net_dict, build_network, random_batch  # noqa: E402


def _time(fn, feed, steps: int) -> float:
    """Seconds per call after one warm-up (tracing) call."""
    fn(feed)
    start = time.perf_counter()
    for _ in range(steps):
        result = fn(feed)
    tf.nest.map_structure(lambda t: t.numpy(), result)
    return (time.perf_counter() - start) / steps


def bench_unit(unit: str, args: argparse.Namespace) -> tuple[float, float, int]:
    """(forward seconds, train step seconds, valid frames) per batch for one unit."""
    extern = {"data": {"dim": args.n_in}, "classes": {"dim": args.classes, "sparse": True}}
    net_dict = blstm_net_dict(layers=args.layers, n_out=args.n_out, unit=unit, dropout=0.1)
    net = build_network(net_dict, extern_data=extern)
    batch = random_batch(net.extern_data, n_batch=args.batch, max_time=args.time, seed=1)
    forward = net.forward_function(["output"])
    params = net.trainable_variables

    @tf.function(input_signature=[net.input_signature(with_targets=True)])
    def train_step(feed):
        with tf.GradientTape() as tape:
            loss = net.total_loss(net.loss_values(net(feed, train=True), feed))
        return loss, tape.gradient(loss, params)

    fwd = _time(forward, net.feed(batch), args.steps)
    train = _time(train_step, net.feed(batch, with_targets=True), args.steps)
    return fwd, train, int(batch.seq_lens("data").sum())


def main(argv: list[str] | None = None) -> int:
    """Run the benchmark for each unit and print a table."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--units", default="lstm,lstmblock,standardlstm")
    parser.add_argument("--layers", type=int, default=3)
    parser.add_argument("--n-out", type=int, default=128)
    parser.add_argument("--n-in", type=int, default=40)
    parser.add_argument("--classes", type=int, default=100)
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--time", type=int, default=100)
    parser.add_argument("--steps", type=int, default=5)
    args = parser.parse_args(argv)
    print(f"{args.layers}x2 LSTM {args.n_out}, input {args.n_in}, batch {args.batch} x {args.time} frames, "
          f"{len(tf.config.list_physical_devices('GPU'))} GPU(s)")
    print(f"{'unit':<14} {'forward s':>10} {'frames/s':>10} {'train s':>10} {'frames/s':>10}")
    for unit in args.units.split(","):
        fwd, train, frames = bench_unit(unit, args)
        print(f"{unit:<14} {fwd:>10.4f} {frames / fwd:>10.0f} {train:>10.4f} {frames / train:>10.0f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
