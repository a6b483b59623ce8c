#!/usr/bin/env python3
"""Benchmark of the batching alone: generates an HDF file (100k sequences by default) in a temp dir,
batches one epoch from it with prefetching and prints batches/s, frames/s and peak memory.

Usage: tools/benchmark_batching.py [--num_seqs 100000] [--dim 40] [--batch_size 5000] [--max_seqs 100]
       [--seq_ordering laplace:.1000] [--chunking 0] [--prefetch 4]

The file is written by a child process, so the peak memory (resource.getrusage) printed here is the
batching's own. The last line is ``frames_per_sec=<number>``.
"""

from __future__ import annotations

import argparse
import ast
import os
import resource
import subprocess
import sys
import tempfile
import time

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from returnn.datasets import BatchGenerator, SimpleHDFWriter, init_dataset  # noqa: E402


def generate(path: str, num_seqs: int, dim: int, min_len: int, max_len: int, num_classes: int) -> None:
    """Write ``num_seqs`` random sequences: dense ``data`` [T, dim] float32 and sparse ``classes`` [T // 4]."""
    rng = np.random.default_rng(0)
    block = 1000
    with SimpleHDFWriter(path, dim=dim, extra_type={"classes": (num_classes, 1, "int32")}) as writer:
        for first in range(0, num_seqs, block):
            lens = rng.integers(min_len, max_len + 1, size=min(block, num_seqs - first))
            frames = rng.standard_normal((int(lens.sum()), dim), dtype=np.float32)
            bounds = np.concatenate([[0], np.cumsum(lens)])
            for i, n in enumerate(lens):
                x = frames[bounds[i] : bounds[i + 1]]
                y = rng.integers(0, num_classes, size=max(int(n) // 4, 1), dtype=np.int32)
                writer.insert_batch(x[None], [int(n)], [f"bench/{first + i}"], extra={"classes": [y]})


def peak_rss_mb() -> float:
    """Peak resident memory of this process in MiB (Linux reports KiB)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def run_epoch(path: str, args: argparse.Namespace, seq_ordering: str) -> tuple[int, int, int, float]:
    """Batch one epoch; returns (batches, seqs, frames, seconds)."""
    ds = init_dataset({"class": "HDFDataset", "files": [path], "seq_ordering": seq_ordering})
    start = time.perf_counter()
    batches = seqs = frames = 0
    gen = BatchGenerator(ds, batch_size=args.batch_size, max_seqs=args.max_seqs, chunking=args.chunking,
                         epoch=1, prefetch=args.prefetch)
    for batch in gen:
        batches += 1
        seqs += batch.num_seqs
        frames += batch.num_frames("data")
    seconds = time.perf_counter() - start
    ds.close()
    return batches, seqs, frames, seconds


def main(argv: list[str] | None = None) -> int:
    """Generate, batch, print the figures."""
    parser = argparse.ArgumentParser(description="batching benchmark on a generated HDF file")
    parser.add_argument("--num_seqs", type=int, default=100_000)
    parser.add_argument("--dim", type=int, default=40)
    parser.add_argument("--min_len", type=int, default=20)
    parser.add_argument("--max_len", type=int, default=180)
    parser.add_argument("--num_classes", type=int, default=500)
    parser.add_argument("--batch_size", type=int, default=5000)
    parser.add_argument("--max_seqs", type=int, default=100)
    parser.add_argument("--chunking", default="0", help='"SIZE:STEP" or per-key dicts, e.g. "({\'data\': 100, \'classes\': 25}, {\'data\': 50, \'classes\': 12})"')
    parser.add_argument("--prefetch", type=int, default=4)
    parser.add_argument("--seq_ordering", default="laplace:.1000")
    parser.add_argument("--generate_only", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.chunking.startswith(("(", "{")):
        args.chunking = ast.literal_eval(args.chunking)
    if args.generate_only:
        generate(args.generate_only, args.num_seqs, args.dim, args.min_len, args.max_len, args.num_classes)
        return 0
    with tempfile.TemporaryDirectory(prefix="returnn-bench-") as tmp:
        path = os.path.join(tmp, "bench.hdf")
        start = time.perf_counter()
        cmd = [sys.executable, os.path.abspath(__file__), "--generate_only", path]
        cmd += [f"--{k}={getattr(args, k)}" for k in ("num_seqs", "dim", "min_len", "max_len", "num_classes")]
        subprocess.run(cmd, check=True)
        size_mb = os.path.getsize(path) / 2**20
        print(f"generated {args.num_seqs} seqs, {size_mb:.0f} MiB in {time.perf_counter() - start:.1f}s")
        result = None
        for ordering in dict.fromkeys(["default", args.seq_ordering]):
            batches, seqs, frames, seconds = run_epoch(path, args, ordering)
            print(f"seq_ordering={ordering}: {batches} batches, {seqs} seqs, {frames} frames in {seconds:.2f}s: "
                  f"{batches / seconds:.1f} batches/s, {frames / seconds:.0f} frames/s")
            result = frames / seconds
        print(f"peak_rss_mb={peak_rss_mb():.0f} (file {size_mb:.0f} MiB)")
        print(f"frames_per_sec={result:.0f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
