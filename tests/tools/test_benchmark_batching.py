"""tools/benchmark_batching.py runs end to end on a small file and prints its figures."""

from __future__ import annotations

import re


def test_benchmark_batching_prints_figures(tool, capsys):
    assert tool("benchmark_batching").main(["--num_seqs", "300", "--dim", "4", "--max_len", "30"]) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    assert re.fullmatch(r"frames_per_sec=\d+", lines[-1])
    assert any("batches/s" in line for line in lines)
    assert any(line.startswith("peak_rss_mb=") for line in lines)
