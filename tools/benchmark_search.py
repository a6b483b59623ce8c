#!/usr/bin/env python3
"""Time beam search of an attention encoder-decoder: a BLSTM encoder, an LSTM decoder with dot attention over
it, a softmax over the vocab and a searching choice, run as one ``tf.function`` per batch.

Usage: tools/benchmark_search.py [--enc-layers 2] [--n-out 256] [--vocab 1000] [--batch 40] [--in-time 50]
                                 [--out-time 50] [--n-in 40] [--beams 12 1] [--repeats 3]

The params are random, so no hypothesis ends early: every search runs ``--out-time`` steps. Prints for each
beam size the seconds per batch (best of ``--repeats`` after tracing), sequences and decoder steps per
second, and last ``seqs_per_sec=`` of the first beam size.
"""

from __future__ import annotations

import argparse
import os
import sys
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import numpy as np  # noqa: E402

from returnn.testing import blstm_net_dict  # noqa: E402
from returnn.tf.network import Network  # noqa: E402


def search_net(args: argparse.Namespace, beam: int) -> dict:
    """The encoder-decoder, its decoder's choice searching with ``beam`` hypotheses per sequence."""
    n = args.n_out
    net = blstm_net_dict(layers=args.enc_layers, n_out=n, unit="lstm")
    net["enc"] = {"class": "copy", "from": net.pop("output")["from"]}  # the last BLSTM layer's two directions
    net["enc_ctx"] = {"class": "linear", "from": "enc", "n_out": n}
    net["output"] = {"class": "rec", "from": [], "target": "classes", "max_seq_len": args.out_time, "unit": {
        "emb": {"class": "linear", "from": "output", "n_out": n},
        "s": {"class": "rec", "unit": "lstm", "from": ["prev:emb", "prev:att"], "n_out": n},
        "energy": {"class": "dot", "from": ["s", "base:enc_ctx"], "red1": "F", "red2": "F", "var1": None, "var2": "T"},
        "att_weights": {"class": "softmax_over_spatial", "from": "energy"},
        "att": {"class": "generic_attention", "weights": "att_weights", "base": "base:enc"},
        "readout": {"class": "linear", "from": ["s", "att"], "activation": "tanh", "n_out": n},
        "prob": {"class": "softmax", "from": "readout", "target": "classes", "loss": "ce"},
        "output": {"class": "choice", "from": "prob", "target": "classes", "beam_size": beam},
        "end": {"class": "compare", "from": "output", "value": 0}}}
    net["decision"] = {"class": "decide", "from": "output", "is_output_layer": True}
    return net


def time_search(args: argparse.Namespace, beam: int) -> float:
    """Seconds per batch of ``args.batch`` sequences (best of ``args.repeats``, after the trace)."""
    extern = {"data": {"dim": args.n_in}, "classes": {"dim": args.vocab, "sparse": True}}
    net = Network(search_net(args, beam), extern_data=extern, options={"search": True})
    rng = np.random.default_rng(1)
    feed = {"data": rng.standard_normal([args.batch, args.in_time, args.n_in]).astype(np.float32),
            "data:seq_len": np.full([args.batch], args.in_time, np.int32)}
    search = net.forward_function(["decision"])
    out = search(feed)  # trace
    assert out["decision"].shape[0] == args.out_time, "a hypothesis ended early; the timing would be off"
    times = []
    for _ in range(args.repeats):
        start = time.perf_counter()
        search(feed)["decision"].numpy()
        times.append(time.perf_counter() - start)
    assert search.experimental_get_tracing_count() == 1
    return min(times)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--enc-layers", type=int, default=2)
    parser.add_argument("--n-out", type=int, default=256)
    parser.add_argument("--vocab", type=int, default=1000)
    parser.add_argument("--batch", type=int, default=40)
    parser.add_argument("--in-time", type=int, default=50)
    parser.add_argument("--out-time", type=int, default=50)
    parser.add_argument("--n-in", type=int, default=40)
    parser.add_argument("--beams", type=int, nargs="+", default=[12, 1])
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args(argv)
    results = {}
    for beam in args.beams:
        seconds = time_search(args, beam)
        results[beam] = args.batch / seconds
        print(f"beam {beam:3d}: {seconds:.3f} s/batch, {results[beam]:.1f} seqs/sec, "
              f"{args.out_time / seconds:.1f} decoder steps/sec ({args.batch} seqs x {args.out_time} steps, "
              f"vocab {args.vocab})")
    print(f"seqs_per_sec={results[args.beams[0]]:.2f}")


if __name__ == "__main__":
    main()
