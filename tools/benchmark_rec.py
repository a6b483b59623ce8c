#!/usr/bin/env python3
"""Time training steps of rec-subnetwork decoders: an attention encoder-decoder with the loop optimizer on and
off, and a decoder whose recurrence only reads targets (demo-tf-enc-dec's ``s``) against the same net written
without a loop.

Usage: tools/benchmark_rec.py [--enc-layers 2] [--n-out 256] [--batch 40] [--in-time 50] [--out-time 20]
                              [--n-in 40] [--classes 100] [--steps 5]

Prints ms per train step and input frames per second for each variant, the ratio of the target-driven
decoder to its loop-free twin, and last ``frames_per_sec=`` of the attention model with the optimizer on.
"""

from __future__ import annotations

import argparse
import os
import sys
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import tensorflow as tf  # noqa: E402

from returnn.testing import random_batch  # noqa: E402
from returnn.tf.network import Network  # noqa: E402


def encoder(layers: int, n_out: int) -> dict:
    """A BLSTM encoder of ``layers`` layers (native LSTM), ``enc`` its last layer's two directions."""
    net: dict = {}
    src: object = "data"
    for i in range(layers):
        for name, direction in (("fw", 1), ("bw", -1)):
            net[f"enc{i}_{name}"] = {"class": "rec", "unit": "lstm", "n_out": n_out, "direction": direction,
                                     "from": src}
        src = [f"enc{i}_fw", f"enc{i}_bw"]
    net["enc"] = {"class": "copy", "from": src}
    return net


def attention_net(args: argparse.Namespace, *, optimize: bool) -> dict:
    """Encoder + an LSTM decoder with dot attention over the encoder, trained on the targets."""
    n = args.n_out
    return {**encoder(args.enc_layers, n),
            "enc_ctx": {"class": "linear", "from": "enc", "n_out": n},
            "dec": {"class": "rec", "from": [], "target": "classes", "optimize_move_layers_out": optimize,
                    "is_output_layer": True, "unit": {
                        "emb": {"class": "linear", "from": "data:classes", "n_out": n},
                        "s": {"class": "rec", "unit": "lstm", "from": ["prev:emb", "prev:att"], "n_out": n},
                        "energy": {"class": "dot", "from": ["s", "base:enc_ctx"], "red1": "F", "red2": "F",
                                   "var1": None, "var2": "T"},
                        "att_weights": {"class": "softmax_over_spatial", "from": "energy"},
                        "att": {"class": "generic_attention", "weights": "att_weights", "base": "base:enc"},
                        "readout": {"class": "linear", "from": ["s", "att"], "activation": "tanh", "n_out": n},
                        "output": {"class": "softmax", "from": "readout", "loss": "ce", "target": "classes"}}}}


def target_driven_net(args: argparse.Namespace, *, loop: bool) -> dict:
    """Encoder summary + an LSTM decoder reading the previous target: as a rec unit dict, or without a loop."""
    n = args.n_out
    net = {**encoder(args.enc_layers, n), "enc_last": {"class": "reduce", "mode": "max", "axes": "T", "from": "enc"}}
    if loop:
        net["dec"] = {"class": "rec", "from": [], "target": "classes", "is_output_layer": True, "unit": {
            "emb": {"class": "linear", "from": "data:classes", "n_out": n},
            "s": {"class": "rec", "unit": "lstm", "from": ["prev:emb", "base:enc_last"], "n_out": n},
            "output": {"class": "softmax", "from": "s", "loss": "ce", "target": "classes"}}}
        return net
    net.update({
        "emb": {"class": "linear", "from": "data:classes", "n_out": n},
        "prev_emb": {"class": "shift_axis", "from": "emb", "axis": "T", "amount": 1},
        "s": {"class": "rec", "unit": "lstm", "from": ["prev_emb", "enc_last"], "n_out": n},
        "output": {"class": "softmax", "from": "s", "loss": "ce", "target": "classes"}})
    return net


def time_train_step(net_dict: dict, args: argparse.Namespace) -> tuple[float, int]:
    """(seconds per train step after tracing, input frames per batch)."""
    extern = {"data": {"dim": args.n_in}, "classes": {"dim": args.classes, "sparse": True}}
    net = Network(net_dict, extern_data=extern)
    batch = random_batch(net.extern_data, n_batch=args.batch, max_time={"data": args.in_time,
                                                                         "classes": args.out_time}, seed=1)
    params = net.trainable_variables

    @tf.function(input_signature=[net.input_signature(with_targets=True)])
    def train_step(feed):
        with tf.GradientTape() as tape:
            loss = net.total_loss(net.loss_values(net(feed, train=True), feed))
        return loss, [tf.convert_to_tensor(g) for g in tape.gradient(loss, params) if g is not None]

    feed = net.feed(batch, with_targets=True)
    train_step(feed)
    best = float("inf")
    for _ in range(args.steps):
        start = time.perf_counter()
        tf.nest.map_structure(lambda t: t.numpy(), train_step(feed))
        best = min(best, time.perf_counter() - start)
    return best, int(batch.seq_lens("data").sum())


def main(argv: list[str] | None = None) -> int:
    """Run the variants and print a table, the ratio and ``frames_per_sec=``."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--enc-layers", type=int, default=2)
    parser.add_argument("--n-out", type=int, default=256)
    parser.add_argument("--batch", type=int, default=40)
    parser.add_argument("--in-time", type=int, default=50)
    parser.add_argument("--out-time", type=int, default=20)
    parser.add_argument("--n-in", type=int, default=40)
    parser.add_argument("--classes", type=int, default=100)
    parser.add_argument("--steps", type=int, default=5, help="timed steps; the best is reported")
    args = parser.parse_args(argv)
    print(f"encoder BLSTM {args.enc_layers}x{args.n_out}, decoder LSTM {args.n_out}; {args.batch} sequences of "
          f"{args.in_time} input frames / {args.out_time} labels (vocab {args.classes}); best of {args.steps}")
    print(f"{'variant':<40} {'ms/step':>9} {'frames/s':>10}")
    results = {}
    variants = [("attention, optimizer on", attention_net(args, optimize=True)),
                ("attention, optimizer off", attention_net(args, optimize=False)),
                ("target-driven decoder, rec unit dict", target_driven_net(args, loop=True)),
                ("target-driven decoder, no loop (by hand)", target_driven_net(args, loop=False))]
    for name, net_dict in variants:
        seconds, frames = time_train_step(net_dict, args)
        results[name] = (seconds, frames / seconds)
        print(f"{name:<40} {seconds * 1000:>9.1f} {frames / seconds:>10.0f}")
    on, off = results["attention, optimizer on"][1], results["attention, optimizer off"][1]
    dict_s = results["target-driven decoder, rec unit dict"][0]
    hand_s = results["target-driven decoder, no loop (by hand)"][0]
    print(f"attention: optimizer on / off speed = {on / off:.2f}x")
    print(f"target-driven decoder: rec unit dict / by hand time = {dict_s / hand_s:.2f}x (bar: 1.3x)")
    print(f"frames_per_sec_optimize_off={off:.0f}")
    print(f"frames_per_sec={on:.0f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
