#!/usr/bin/env python3
"""List the variables of a checkpoint: name, shape, dtype, and optionally statistics or values.

Usage: tools/print_checkpoint.py MODEL.NNN [--values] [--filter SUBSTRING]
"""

from __future__ import annotations

import argparse
import os
import sys

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from returnn.errors import ReturnnError  # noqa: E402
from returnn.tf.checkpoint import read_checkpoint  # noqa: E402


def main(argv: list[str] | None = None) -> int:
    """Print one line per variable; exit 1 with a message for a missing or broken checkpoint."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("checkpoint", help="checkpoint prefix, e.g. net-model/network.005")
    parser.add_argument("--values", action="store_true", help="print the full values too")
    parser.add_argument("--filter", default="", help="only variables whose name contains this")
    args = parser.parse_args(argv)
    try:
        tensors = read_checkpoint(args.checkpoint)
    except ReturnnError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    total = 0
    for name in sorted(tensors):
        if args.filter not in name:
            continue
        value = np.asarray(tensors[name])
        total += value.size
        stats = ""
        if value.size and np.issubdtype(value.dtype, np.number):
            stats = f" mean {value.mean():.4g} std {value.std():.4g} min {value.min():.4g} max {value.max():.4g}"
        print(f"{name} shape {list(value.shape)} {value.dtype}{stats}")
        if args.values:
            print(np.array2string(value, threshold=sys.maxsize))
    print(f"total: {total} values")
    return 0


if __name__ == "__main__":
    sys.exit(main())
