"""Search output: labels as text, and the txt/py files in corpus order, written atomically."""

from __future__ import annotations

import ast
import gzip
import os

import numpy as np
import pytest

from returnn.errors import ConfigError
from returnn.tf.search_output import SearchOutputWriter, labels_to_text

VOCAB = ["<s>", "hel@@", "lo", "wor@@", "ld", "!"]


def test_labels_to_text_with_vocab_and_bpe_join():
    labels = np.array([1, 2, 3, 4, 5], dtype=np.int32)
    assert labels_to_text(labels, VOCAB) == "hel@@ lo wor@@ ld !"
    assert labels_to_text(labels, VOCAB, bpe_join=True) == "hello world !"
    assert labels_to_text([2, 3], VOCAB, bpe_join=True) == "lo wor"  # dangling "@@" dropped
    assert labels_to_text([], VOCAB) == ""


def test_labels_to_text_without_vocab_gives_plain_ints():
    out = labels_to_text(np.array([3, 0, 7], dtype=np.int64), None)
    assert out == [3, 0, 7] and all(type(label) is int for label in out)


def test_labels_to_text_label_outside_vocab():
    with pytest.raises(ValueError, match=r"label 6 is outside the vocab \(size 6\)"):
        labels_to_text([1, 6], VOCAB)
    with pytest.raises(ValueError, match="label -1"):
        labels_to_text([-1], VOCAB)


def _fill(writer: SearchOutputWriter) -> None:
    """Three seqs added out of corpus order: text, labels (numpy), n-best."""
    writer.add(2, "seq-c", [(-3.5, "c worse"), (-1.25, "c best"), (float("-inf"), "c dead")])
    writer.add(0, "seq-a", "hello world")
    writer.add(1, "seq-b", np.array([4, 5, 6]))


def test_txt_one_line_per_seq_in_corpus_order(tmp_path):
    path = tmp_path / "out.txt"
    with SearchOutputWriter(str(path), "txt") as writer:
        _fill(writer)
    assert path.read_text() == "hello world\n4 5 6\nc best\n"


def test_txt_n_best_of_labels_writes_best_label_line(tmp_path):
    path = tmp_path / "out.txt"
    with SearchOutputWriter(str(path), "txt") as writer:
        writer.add(0, "a", [(-2.0, [1, 2]), (-0.5, [3]), (-0.5, [4])])  # tie: first given wins
        writer.add(1, "b", [])  # an empty hypothesis
    assert path.read_text() == "3\n\n"


def test_py_round_trips_with_literal_eval(tmp_path):
    path = tmp_path / "out.py"
    with SearchOutputWriter(str(path), "py") as writer:
        _fill(writer)
        writer.add(3, "seq-d", [(0.1 + 0.2, [1, 2]), (float("nan"), [3])])
    text = path.read_text()
    assert text.splitlines()[1].startswith("'seq-a': ")  # one entry a line, corpus order
    assert len(text.splitlines()) == 6
    got = ast.literal_eval(text)
    assert list(got) == ["seq-a", "seq-b", "seq-c", "seq-d"]
    assert got["seq-a"] == "hello world"
    assert got["seq-b"] == [4, 5, 6]
    assert got["seq-c"] == [(-1.25, "c best"), (-3.5, "c worse"), (-1e30, "c dead")]
    assert got["seq-d"] == [(0.1 + 0.2, [1, 2]), (-1e30, [3])]  # exact float round trip


def test_gz_path_is_gzip_compressed(tmp_path):
    for fmt in ("txt", "py"):
        path = tmp_path / f"out.{fmt}.gz"
        with SearchOutputWriter(str(path), fmt) as writer:
            _fill(writer)
        with gzip.open(path, "rt", encoding="utf-8") as f:
            text = f.read()
        if fmt == "txt":
            assert text == "hello world\n4 5 6\nc best\n"
        else:
            assert ast.literal_eval(text)["seq-b"] == [4, 5, 6]


def test_abort_keeps_old_file_and_leaves_no_temp_file(tmp_path):
    path = tmp_path / "out.txt"
    path.write_text("old\n")
    writer = SearchOutputWriter(str(path), "txt")
    _fill(writer)
    writer.abort()
    writer.close()  # after abort: nothing to write
    assert path.read_text() == "old\n"
    with pytest.raises(RuntimeError, match="search failed"):
        with SearchOutputWriter(str(path), "py") as writer:
            _fill(writer)
            raise RuntimeError("search failed")
    assert path.read_text() == "old\n"
    assert os.listdir(tmp_path) == ["out.txt"]
    with SearchOutputWriter(str(tmp_path / "new.txt"), "txt") as writer:
        writer.add(0, "a", "x")
        writer.abort()
    assert os.listdir(tmp_path) == ["out.txt"]


def test_old_file_intact_until_close(tmp_path):
    path = tmp_path / "out.txt"
    path.write_text("old\n")
    writer = SearchOutputWriter(str(path), "txt")
    _fill(writer)
    assert path.read_text() == "old\n"
    writer.close()
    assert path.read_text() == "hello world\n4 5 6\nc best\n"
    assert os.listdir(tmp_path) == ["out.txt"]


def test_unknown_format_names_the_config_key(tmp_path):
    with pytest.raises(ConfigError, match=r'"search_output_file_format".*\'json\'.*txt, py'):
        SearchOutputWriter(str(tmp_path / "out.json"), "json")


def test_add_misuse_is_an_error(tmp_path):
    writer = SearchOutputWriter(str(tmp_path / "out.txt"), "txt")
    writer.add(0, "a", "x")
    with pytest.raises(ValueError, match="corpus index 0 added twice"):
        writer.add(0, "b", "y")
    with pytest.raises(ValueError, match="seq tag 'a' added twice"):
        writer.add(1, "a", "y")
    with pytest.raises(TypeError, match="seq 'c': expected a str or a sequence of int labels"):
        writer.add(2, "c", [1.5, 2])
    with pytest.raises(TypeError, match=r"seq 'd': n-best entry 0: expected a \(score, hyp\) pair"):
        writer.add(3, "d", [(1.0, "x", "extra")])
    with pytest.raises(ValueError, match="line break"):
        writer.add(4, "e", "two\nlines")
    writer.close()
    with pytest.raises(ValueError, match="after close"):
        writer.add(5, "f", "z")
