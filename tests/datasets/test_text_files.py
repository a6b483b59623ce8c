"""Text files of datasets: UTF-8 and gzip, with errors that name the file and line."""

from __future__ import annotations

import gzip

import pytest

from returnn.datasets.text_files import read_text_lines
from returnn.errors import DatasetError


def test_read_text_lines_plain_and_gzipped(tmp_path):
    (tmp_path / "a.txt").write_bytes("x y\r\n\u00e9\n".encode("utf-8"))
    with gzip.open(tmp_path / "a.txt.gz", "wb") as f:
        f.write("x y\n\u00e9\n".encode("utf-8"))
    assert read_text_lines(str(tmp_path / "a.txt")) == ["x y", "\u00e9"]
    assert read_text_lines(str(tmp_path / "a.txt.gz")) == ["x y", "\u00e9"]


def test_read_text_lines_split_at_newline_only(tmp_path):
    # As readlines / RETURNN: U+2028 and form feed stay inside a line, CRLF loses its CR, no empty last line.
    (tmp_path / "a.txt").write_bytes("a\u2028b\r\nc\x0cd\n\ne\n".encode("utf-8"))
    assert read_text_lines(str(tmp_path / "a.txt")) == ["a\u2028b", "c\x0cd", "", "e"]


def test_read_text_lines_bad_utf8_names_line(tmp_path):
    (tmp_path / "seqs.txt").write_bytes(b"seq-1\nseq-2\nseq-\x80\n")
    with pytest.raises(DatasetError, match=r"file '.*seqs\.txt', line 3: not valid UTF-8 \(byte b'\\x80' at offset 16"):
        read_text_lines(str(tmp_path / "seqs.txt"))


def test_read_text_lines_truncated_or_missing_gzip(tmp_path):
    data = gzip.compress(b"line\n" * 1000)
    (tmp_path / "cut.txt.gz").write_bytes(data[: len(data) // 2])
    with pytest.raises(DatasetError, match=r"'.*cut\.txt\.gz': the gzip data is truncated or corrupt"):
        read_text_lines(str(tmp_path / "cut.txt.gz"))
    (tmp_path / "plain.gz").write_bytes(b"not gzip at all")
    with pytest.raises(DatasetError, match=r"'.*plain\.gz': the gzip data is truncated or corrupt"):
        read_text_lines(str(tmp_path / "plain.gz"))
    with pytest.raises(DatasetError, match=r"cannot read file '.*missing\.txt'"):
        read_text_lines(str(tmp_path / "missing.txt"))
