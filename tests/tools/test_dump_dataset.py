"""tools/dump_dataset.py prints keys, sequences and statistics."""

from __future__ import annotations


def test_dump_dataset_prints_sequences_and_statistics(tool, spec_example, capsys):
    assert tool("dump_dataset").main([spec_example, "--show", "1"]) == 0
    out = capsys.readouterr().out
    assert "keys ['data', 'classes']" in out
    assert "seq 0 tag 'seq-0'" in out and "classes (4,) int32: a b c d" in out
    assert "statistics classes: seqs 2, frames 6" in out


def test_dump_dataset_reports_errors(tool, tmp_path, capsys):
    assert tool("dump_dataset").main([str(tmp_path / "missing.hdf")]) == 1
    assert "DatasetError" in capsys.readouterr().err
