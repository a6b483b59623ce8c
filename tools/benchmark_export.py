#!/usr/bin/env python3
"""Time the exported SavedModel against our engine on the same random params and inputs: a BLSTM acoustic
model (native LSTM) through ``serving_default``, and an attention encoder-decoder through ``search``.

Usage: tools/benchmark_export.py [--layers 2] [--n-out 256] [--n-in 40] [--time 50] [--batch 40]
                                 [--vocab 1000] [--beam 12] [--out-time 30] [--repeats 5]

For each model and each of "ours" (``Network.forward_function`` / ``search_function``, as the tasks run them)
and "exported" (the signature of ``tf.saved_model.load``, in this process): the latency of one sequence
(batch 1) and the sequences per second of a batch of ``--batch``, best of ``--repeats`` after tracing.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from typing import Any, Callable

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402

from returnn.config import Config  # noqa: E402
from returnn.testing import blstm_net_dict  # noqa: E402
from returnn.tf.engine import Engine  # noqa: E402
from returnn.tf.export import SEARCH_SIGNATURE, SERVING_SIGNATURE, export_model, signature_key  # noqa: E402
from returnn.tf.search import search_function  # noqa: E402


def attention_net(args: argparse.Namespace) -> dict:
    """A BLSTM encoder and an LSTM decoder with dot attention whose choice searches ``--beam`` hypotheses."""
    n = args.n_out
    return {
        "enc_fw": {"class": "rec", "unit": "nativelstm", "n_out": n, "direction": 1, "from": "data"},
        "enc_bw": {"class": "rec", "unit": "nativelstm", "n_out": n, "direction": -1, "from": "data"},
        "enc": {"class": "copy", "from": ["enc_fw", "enc_bw"]},
        "enc_ctx": {"class": "linear", "from": "enc", "n_out": n},
        "output": {"class": "rec", "from": [], "target": "classes", "max_seq_len": args.out_time, "unit": {
            "emb": {"class": "linear", "from": "prev:output", "n_out": n},
            "s": {"class": "rec", "unit": "lstm", "from": ["emb", "prev:att"], "n_out": n},
            "energy": {"class": "dot", "from": ["s", "base:enc_ctx"], "red1": "F", "red2": "F", "var1": None,
                       "var2": "T"},
            "att_weights": {"class": "softmax_over_spatial", "from": "energy"},
            "att": {"class": "generic_attention", "weights": "att_weights", "base": "base:enc"},
            "prob": {"class": "softmax", "from": ["s", "att"], "target": "classes", "loss": "ce"},
            "output": {"class": "choice", "from": "prob", "target": "classes", "beam_size": args.beam},
            "end": {"class": "compare", "from": "output", "value": 0}}},
    }


def best_time(function: Callable[[], Any], repeats: int) -> float:
    """Seconds of the fastest of ``repeats`` calls, after one call that traces."""
    function()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        function()
        times.append(time.perf_counter() - start)
    return min(times)


def feed(args: argparse.Namespace, n_batch: int) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(n_batch)
    return {"data": rng.standard_normal([n_batch, args.time, args.n_in]).astype(np.float32),
            "data:seq_len": np.full([n_batch], args.time, np.int32)}


def compare(name: str, config: dict, ours: Callable[[Engine], Callable], signature: str, args: argparse.Namespace,
            workdir: str) -> None:
    """Export ``config``'s random params, then time our function and the exported signature; print a line each."""
    config = dict(config, model=os.path.join(workdir, name), log_verbosity=1)
    Engine(Config(config)).save_model(1)
    export_dir = os.path.join(workdir, f"{name}_export")
    export_model(Config(dict(config, task="export", load_epoch=1)), export_dir)
    engine = Engine(Config(config), search=signature == SEARCH_SIGNATURE, output_layer="output")
    engine.load_for_inference()
    ours_fn = ours(engine)
    exported_fn = tf.saved_model.load(export_dir).signatures[signature]
    def exported(batch: dict[str, np.ndarray]) -> Any:
        return exported_fn(**{signature_key(key): tf.constant(value) for key, value in batch.items()})

    for label, run in (("ours", ours_fn), ("exported", exported)):
        one, many = feed(args, 1), feed(args, args.batch)
        latency = best_time(lambda: tf.nest.map_structure(lambda t: t.numpy(), run(one)), args.repeats)
        per_batch = best_time(lambda: tf.nest.map_structure(lambda t: t.numpy(), run(many)), args.repeats)
        print(f"{name:10s} {label:9s} latency {latency * 1000:8.2f} ms/seq   {args.batch / per_batch:8.1f} seqs/sec "
              f"(batch {args.batch})")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    for flag, default in (("layers", 2), ("n-out", 256), ("n-in", 40), ("time", 50), ("batch", 40), ("vocab", 1000),
                          ("beam", 12), ("out-time", 30), ("repeats", 5)):
        parser.add_argument(f"--{flag}", type=int, default=default)
    args = parser.parse_args(argv)
    extern = {"data": {"dim": args.n_in}, "classes": {"dim": args.vocab, "sparse": True}}
    blstm = {"extern_data": extern, "network": blstm_net_dict(layers=args.layers, n_out=args.n_out, unit="nativelstm")}
    attention = {"extern_data": extern, "network": attention_net(args)}
    print(f"TensorFlow {tf.__version__}, {len(tf.config.list_logical_devices('GPU'))} GPUs, "
          f"{os.cpu_count()} CPUs; T={args.time}, n_out={args.n_out}, beam={args.beam}, out_time<={args.out_time}")
    with tempfile.TemporaryDirectory() as workdir:
        compare("blstm", blstm, lambda engine: engine.network.forward_function(["output"]), SERVING_SIGNATURE,
                args, workdir)
        compare("attention", attention, lambda engine: search_function(engine.network, "output"), SEARCH_SIGNATURE,
                args, workdir)
    return 0


if __name__ == "__main__":
    sys.exit(main())
