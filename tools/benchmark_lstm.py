#!/usr/bin/env python3
"""Benchmark the LSTM units: ms per training step (forward + backward) and GFLOP/s.

Prints per variant ``unit=<name> ms_per_step=<x> gflops=<y>``, then ``matmul gflops=<z>`` for one
large tf.matmul in the same run and the native/matmul ratio. Default: 1 bidirectional layer of
256 units, 40 sequences x 50 frames. Variants: the rec units (nativelstm, lstmblock, standardlstm,
gru, rnn), ``standardlstm-xla`` (same loop, train step under jit_compile=True) and ``keras`` (Keras 3's
LSTM layer, only for comparison). ``--network`` builds the same stack as a network dict of ``rec``
layers (``lstm{i}_fw`` / ``lstm{i}_bw`` as in RETURNN's docs) and times it through the network.

    python tools/benchmark_lstm.py --layers 2 --units 512 --batch 40 --time 50
    python tools/benchmark_lstm.py --network --layers 3
"""

from __future__ import annotations

import argparse
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import keras  # noqa: E402  (only for the comparison; the library never imports keras)
import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402

from returnn.tf.layers.rec.units import make_unit  # noqa: E402
from returnn.testing import blstm_net_dict, build_network  # noqa: E402

DEFAULT_VARIANTS = "nativelstm,lstmblock,standardlstm,standardlstm-xla,keras"


def lstm_flops(args: argparse.Namespace) -> float:
    """Matmul FLOPs of one LSTM training step (forward + the backward products that are needed)."""
    dirs = 2 if args.bidirectional else 1
    n, total = args.units, 0.0
    for layer in range(args.layers):
        n_in = args.n_in if layer == 0 else dirs * n
        input_products = 2 if layer == 0 else 3  # x @ W, dW (+ dx above the first layer)
        per_dir = 2.0 * args.time * args.batch * 4 * n * (input_products * n_in + 3 * n)  # h @ W_re, dh, dW_re
        total += dirs * per_dir
    return total


def build_units(args: argparse.Namespace, unit: str) -> list[list]:
    """Per layer the units of each direction."""
    dirs = 2 if args.bidirectional else 1
    layers = []
    for layer in range(args.layers):
        n_in = args.n_in if layer == 0 else dirs * args.units
        layers.append([make_unit(unit, n_in=n_in, n_out=args.units, name=f"l{layer}d{d}", seed=layer) for d in range(dirs)])
    return layers


def rec_step_fn(args: argparse.Namespace, unit: str, xla: bool):
    """A tf.function computing the loss and gradients through stacked (bidirectional) rec units."""
    layers = build_units(args, unit)
    variables = [v for units in layers for u in units for v in u.trainable_variables]

    def step(x, seq_lens):
        with tf.GradientTape() as tape:
            h = x
            for units in layers:
                h = tf.concat([u(h, seq_lens, direction=1 - 2 * d)[0] for d, u in enumerate(units)], axis=-1)
            loss = tf.reduce_sum(tf.square(h))
        return loss, tape.gradient(loss, variables)

    return tf.function(step, jit_compile=xla) if xla else tf.function(step)


def network_step_fn(args: argparse.Namespace, unit: str, xla: bool):
    """The same stack built from a net dict of rec layers; takes time-major x like the unit variants."""
    net_dict = blstm_net_dict(layers=args.layers, n_out=args.units, unit=unit)
    last = [f"lstm{args.layers - 1}_fw"] + ([f"lstm{args.layers - 1}_bw"] if args.bidirectional else [])
    if not args.bidirectional:
        net_dict = {k: {**v, "from": f"lstm{int(k[4:-3]) - 1}_fw" if k != "lstm0_fw" else "data"}
                    for k, v in net_dict.items() if k.endswith("_fw")}
    net_dict = {k: v for k, v in net_dict.items() if k != "output"}
    for name in last:
        net_dict[name] = {**net_dict[name], "is_output_layer": True}
    net = build_network(net_dict, extern_data={"data": {"dim": args.n_in}})
    variables = net.trainable_variables

    def step(x, seq_lens):
        with tf.GradientTape() as tape:
            outputs = net({"data": tf.transpose(x, [1, 0, 2]), "data:seq_len": seq_lens}, train=True)
            loss = tf.add_n([tf.reduce_sum(tf.square(outputs[name].tensor)) for name in last])
        return loss, tape.gradient(loss, variables)

    return tf.function(step, jit_compile=xla) if xla else tf.function(step)


def keras_step_fn(args: argparse.Namespace):
    """The same network from Keras 3's LSTM layer (batch-major), for comparison only."""
    layers = []
    for _ in range(args.layers):
        lstm = keras.layers.LSTM(args.units, return_sequences=True)
        layers.append(keras.layers.Bidirectional(lstm) if args.bidirectional else lstm)

    def step(x, seq_lens):
        with tf.GradientTape() as tape:
            h = tf.transpose(x, [1, 0, 2])
            for layer in layers:
                h = layer(h)
            loss = tf.reduce_sum(tf.square(h))
        variables = [v for layer in layers for v in layer.trainable_variables]
        return loss, tape.gradient(loss, variables)

    return tf.function(step)


def run_once(fn, inputs: tuple) -> float:
    """Seconds for one call, including fetching the results."""
    start = time.perf_counter()
    tf.nest.map_structure(lambda t: t.numpy(), fn(*inputs))
    return time.perf_counter() - start


def time_interleaved(fns: dict, inputs: dict, *, steps: int, warmup: int, rounds: int,
                     stat: str = "min") -> dict[str, float]:
    """Seconds per call of each fn (min or median), timed round-robin so that load from elsewhere hits all alike."""
    for name, fn in fns.items():
        for _ in range(warmup):
            run_once(fn, inputs[name])
    times = {name: [] for name in fns}
    per_round = max(1, steps // rounds)
    for _ in range(rounds):
        for name, fn in fns.items():
            times[name] += [run_once(fn, inputs[name]) for _ in range(per_round)]
    reduce = np.min if stat == "min" else np.median
    return {name: float(reduce(t)) for name, t in times.items()}


def matmul_fn(size: int):
    """One large square tf.matmul and its inputs."""
    a = tf.random.normal([size, size])
    b = tf.random.normal([size, size])
    return tf.function(lambda a, b: tf.reduce_sum(tf.matmul(a, b))), (a, b)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--layers", type=int, default=1)
    parser.add_argument("--units", type=int, default=256, help="n_out per direction")
    parser.add_argument("--n-in", type=int, default=None, help="input dim (default: --units)")
    parser.add_argument("--batch", type=int, default=40)
    parser.add_argument("--time", type=int, default=50)
    parser.add_argument("--unidirectional", dest="bidirectional", action="store_false")
    parser.add_argument("--variants", default=DEFAULT_VARIANTS, help=f"comma separated (default {DEFAULT_VARIANTS})")
    parser.add_argument("--steps", type=int, default=20, help="timed steps per variant")
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--rounds", type=int, default=5, help="round-robin rounds over the variants")
    parser.add_argument("--matmul-size", type=int, default=2048)
    parser.add_argument("--network", action="store_true", help="time the stack built through the rec layer of a network")
    parser.add_argument("--stat", choices=("min", "median"), default="min",
                        help="min (default) filters out interference from other jobs; median shows its effect")
    args = parser.parse_args(argv)
    args.n_in = args.n_in or args.units
    return args


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    rng = np.random.default_rng(0)
    x = tf.constant(rng.normal(size=(args.time, args.batch, args.n_in)).astype(np.float32))
    seq_lens = tf.fill([args.batch], args.time)
    flops = lstm_flops(args)
    print(f"layers={args.layers} units={args.units} n_in={args.n_in} batch={args.batch} time={args.time} "
          f"bidirectional={args.bidirectional} gflop_per_step={flops / 1e9:.2f} stat={args.stat} steps={args.steps} "
          f"through={'network' if args.network else 'units'}")
    fns, inputs = {}, {}
    for variant in args.variants.split(","):
        if variant == "keras":
            fns[variant] = keras_step_fn(args)
        elif args.network:
            fns[variant] = network_step_fn(args, variant.removesuffix("-xla"), xla=variant.endswith("-xla"))
        else:
            fns[variant] = rec_step_fn(args, variant.removesuffix("-xla"), xla=variant.endswith("-xla"))
        inputs[variant] = (x, seq_lens)
    fns["matmul"], inputs["matmul"] = matmul_fn(args.matmul_size)
    results = time_interleaved(fns, inputs, steps=args.steps, warmup=args.warmup, rounds=args.rounds, stat=args.stat)
    matmul = 2.0 * args.matmul_size**3 / results.pop("matmul") / 1e9
    for variant, seconds in results.items():
        print(f"unit={variant} ms_per_step={seconds * 1e3:.1f} gflops={flops / seconds / 1e9:.1f}")
    print(f"matmul gflops={matmul:.1f}")
    if "nativelstm" in results:
        native = results["nativelstm"]
        print(f"nativelstm/matmul gflops ratio={flops / native / 1e9 / matmul:.2f}")
        for variant, seconds in results.items():
            if variant != "nativelstm":
                print(f"nativelstm speedup vs {variant}={seconds / native:.2f}x")


if __name__ == "__main__":
    main()
