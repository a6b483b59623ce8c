#!/usr/bin/env python3
"""Print sequences, shapes and statistics (lengths, class counts, feature mean/std) of a dataset.

Usage: tools/dump_dataset.py CONFIG_OR_DATASET [--dataset train] [--epoch 1] [--show 3] [--max_seqs N]

CONFIG_OR_DATASET is a config file (its ``train`` dataset, or the one ``--dataset`` names), a dataset
dict literal, or HDF file paths.
"""

from __future__ import annotations

import argparse
import os
import sys

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from returnn.datasets.base import Dataset  # noqa: E402
from returnn.datasets.cli import dataset_from_arg  # noqa: E402
from returnn.datasets.statistics import collect_statistics  # noqa: E402
from returnn.errors import ReturnnError  # noqa: E402


def describe(dataset: Dataset) -> list[str]:
    """One line per data key: dim, sparse, dtype, shape, labels."""
    lines = [f"dataset {dataset.name}: {type(dataset).__name__}, keys {dataset.get_data_keys()}"]
    for key in dataset.get_data_keys():
        labels = dataset.labels.get(key) or []
        lines.append(f"  {key}: dim {dataset.get_data_dim(key)}, sparse {dataset.is_data_sparse(key)}, "
                     f"dtype {dataset.get_data_dtype(key)}, frame shape {dataset.get_data_shape(key)}, "
                     f"{len(labels)} labels")
    return lines


def show_seq(dataset: Dataset, seq_idx: int) -> list[str]:
    """Tag, per-key shape and content (labels for sparse keys if known) of one sequence."""
    dataset.load_seqs(seq_idx, seq_idx + 1)
    lines = [f"seq {seq_idx} tag {dataset.get_tag(seq_idx)!r}"]
    for key in dataset.get_data_keys():
        x = dataset.get_data(seq_idx, key)
        labels = dataset.labels.get(key)
        if dataset.is_data_sparse(key) and labels:
            content = " ".join(labels[i] if 0 <= i < len(labels) else str(i) for i in x[:50].tolist())
        else:
            content = np.array2string(x[:3], precision=3, threshold=20, max_line_width=160)
        lines.append(f"  {key} {x.shape} {x.dtype}: {content}")
    return lines


def main(argv: list[str] | None = None) -> int:
    """Print description, the first sequences and statistics; returns the exit code."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("dataset", help="config file, dataset dict literal, or HDF file(s)")
    parser.add_argument("--dataset", dest="dataset_key", default="train")
    parser.add_argument("--epoch", type=int, default=1)
    parser.add_argument("--show", type=int, default=3, help="number of sequences to print")
    parser.add_argument("--max_seqs", type=int, default=None, help="statistics over the first N sequences only")
    args = parser.parse_args(argv)
    try:
        dataset = dataset_from_arg(args.dataset, dataset_key=args.dataset_key)
        print("\n".join(describe(dataset)))
        dataset.init_seq_order(epoch=args.epoch)
        print(f"epoch {args.epoch}: {dataset.num_seqs} seqs")
        for seq_idx in range(min(args.show, dataset.num_seqs)):
            print("\n".join(show_seq(dataset, seq_idx)))
        for key, figures in collect_statistics(dataset, epoch=args.epoch, max_seqs=args.max_seqs).items():
            print(f"statistics {key}: " + ", ".join(f"{name} {value}" for name, value in figures.items()))
    except ReturnnError as exc:
        print(f"{type(exc).__name__}: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
