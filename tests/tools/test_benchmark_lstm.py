"""tools/benchmark_lstm.py on a tiny setup: the lines it promises, in unit and network mode."""

import re

import pytest


@pytest.mark.slow
@pytest.mark.parametrize("mode", [[], ["--network"]])
def test_benchmark_lstm_prints_unit_lines_and_matmul(tool, capsys, mode):
    module = tool("benchmark_lstm")
    module.main(["--units", "8", "--batch", "2", "--time", "4", "--steps", "1", "--warmup", "1", "--rounds", "1",
                 "--matmul-size", "64", "--variants", "nativelstm,standardlstm"] + mode)
    out = capsys.readouterr().out
    assert re.search(r"^unit=nativelstm ms_per_step=[\d.]+ gflops=[\d.]+$", out, re.M)
    assert re.search(r"^unit=standardlstm ms_per_step=[\d.]+ gflops=[\d.]+$", out, re.M)
    assert re.search(r"^matmul gflops=[\d.]+$", out, re.M) and "nativelstm/matmul gflops ratio=" in out


@pytest.mark.slow
def test_benchmark_training_ends_with_frames_per_sec(tool, capsys, monkeypatch):
    module = tool("benchmark_training")
    monkeypatch.setattr("sys.argv", ["benchmark_training.py", "--unit", "standardlstm", "--layers", "1", "--units", "4",
                                     "--n_in", "3", "--n_classes", "5", "--seqs_per_batch", "2", "--time", "5",
                                     "--steps", "2", "--repeats", "1"])
    module.main()
    lines = capsys.readouterr().out.strip().splitlines()
    assert "engine overhead" in lines[-2]
    assert re.fullmatch(r"frames_per_sec=[\d.]+", lines[-1]) and float(lines[-1].split("=")[1]) > 0
