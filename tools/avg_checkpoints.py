#!/usr/bin/env python3
"""Average the parameters of several epochs' checkpoints into a new checkpoint.

Usage: tools/avg_checkpoints.py --model net-model/network --epochs 8 9 10 --out net-model/network.avg
(or give checkpoint prefixes directly with --checkpoints). Float tensors are averaged; integer ones
(step counters) are taken from the last checkpoint. Only the model's params are written; the training state
(``updater/``: optimizer slots, accumulators, step counter, learning rate) too with --keep-optimizer.
"""

from __future__ import annotations

import argparse
import os
import sys

import numpy as np
import tensorflow as tf

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from returnn.errors import ReturnnError  # noqa: E402
from returnn.tf.checkpoint import CheckpointError, epoch_checkpoint_prefix, read_checkpoint, save_checkpoint  # noqa: E402

TRAINING_STATE_PREFIX = "updater/"  # what our checkpoints hold besides the params


def average_checkpoints(prefixes: list[str], *, keep_optimizer: bool = False) -> dict[str, np.ndarray]:
    """Mean of every float tensor over ``prefixes``; all must hold the same names and shapes."""
    stores = [read_checkpoint(p) for p in prefixes]
    names = sorted(n for n in stores[-1] if keep_optimizer or not n.startswith(TRAINING_STATE_PREFIX))
    result = {}
    for name in names:
        values = []
        for prefix, store in zip(prefixes, stores):
            if name not in store or store[name].shape != stores[-1][name].shape:
                raise CheckpointError(f"checkpoint {prefix!r}: variable {name!r} is missing or has another shape "
                                      f"than in {prefixes[-1]!r}")
            values.append(store[name])
        last = values[-1]
        result[name] = np.mean(values, axis=0).astype(last.dtype) if np.issubdtype(last.dtype, np.floating) else last
    return result


def main(argv: list[str] | None = None) -> int:
    """Write the averaged checkpoint; exit 1 with a message when an input is missing or does not fit."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", help="model prefix as in the config's `model`")
    parser.add_argument("--epochs", type=int, nargs="+", help="epochs to average (with --model)")
    parser.add_argument("--checkpoints", nargs="+", help="checkpoint prefixes to average")
    parser.add_argument("--out", required=True, help="prefix of the checkpoint to write")
    parser.add_argument("--keep-optimizer", action="store_true",
                        help="also write the training state (optimizer slots averaged, step and rate of the last)")
    args = parser.parse_args(argv)
    prefixes = list(args.checkpoints or [])
    if args.model and args.epochs:
        prefixes += [epoch_checkpoint_prefix(args.model, e) for e in args.epochs]
    if not prefixes:
        parser.error("give --checkpoints, or --model with --epochs")
    try:
        averaged = average_checkpoints(prefixes, keep_optimizer=args.keep_optimizer)
        save_checkpoint(args.out, {name: tf.Variable(value) for name, value in averaged.items()})
    except ReturnnError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    print(f"averaged {len(prefixes)} checkpoints, {len(averaged)} variables -> {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
