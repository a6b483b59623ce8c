#!/usr/bin/env python3
"""Dump a dataset into a RETURNN HDF file.

Usage: tools/hdf_dump.py CONFIG_OR_DATASET OUT.hdf [--dataset train] [--epoch 1] [--start_seq 0] [--end_seq -1]

CONFIG_OR_DATASET is a config file (its ``train`` dataset, or the one ``--dataset`` names), a dataset
dict literal such as ``"{'class': 'Task12AXDataset', 'num_seqs': 100}"``, or HDF file paths.
"""

from __future__ import annotations

import argparse
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from returnn.datasets.cli import dataset_from_arg  # noqa: E402
from returnn.datasets.hdf_writer import dump_dataset  # noqa: E402
from returnn.errors import ReturnnError  # noqa: E402


class ProgressBar:
    """A one-line progress bar on stderr (a line per 10% when stderr is not a terminal)."""

    def __init__(self, stream=sys.stderr):
        self.stream = stream
        self.tty = stream.isatty()
        self.start = time.monotonic()
        self.last_tenth = -1

    def __call__(self, done: int, total: int) -> None:
        fraction = done / max(total, 1)
        elapsed = time.monotonic() - self.start
        eta = elapsed / fraction - elapsed if fraction > 0 else 0.0
        text = f"{done}/{total} seqs ({100 * fraction:.0f}%), {elapsed:.0f}s elapsed, ETA {eta:.0f}s"
        if self.tty:
            bar = "#" * int(30 * fraction)
            self.stream.write(f"\r[{bar:<30}] {text}")
            if done == total:
                self.stream.write("\n")
        elif int(10 * fraction) > self.last_tenth:
            self.last_tenth = int(10 * fraction)
            self.stream.write(text + "\n")
        self.stream.flush()


def main(argv: list[str] | None = None) -> int:
    """Parse the arguments, dump, print a summary; returns the exit code."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[1])
    parser.add_argument("dataset", help="config file, dataset dict literal, or HDF file(s)")
    parser.add_argument("out", help="output HDF file")
    parser.add_argument("--dataset", dest="dataset_key", default="train", help="config key of the dataset")
    parser.add_argument("--epoch", type=int, default=1)
    parser.add_argument("--start_seq", type=int, default=0)
    parser.add_argument("--end_seq", type=int, default=-1, help="last seq index, inclusive as in RETURNN (-1: all)")
    args = parser.parse_args(argv)
    try:
        dataset = dataset_from_arg(args.dataset, dataset_key=args.dataset_key)
        count = dump_dataset(dataset, args.out, epoch=args.epoch, start_seq=args.start_seq, end_seq=args.end_seq + 1 if args.end_seq >= 0 else None,
                             progress=ProgressBar())
    except ReturnnError as exc:
        print(f"{type(exc).__name__}: {exc}", file=sys.stderr)
        return 1
    print(f"wrote {count} sequences of {dataset.name} to {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
