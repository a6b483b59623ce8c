"""LmDataset and TranslationDataset: vocab formats, unknown tokens, end symbols, gzipped files."""

from __future__ import annotations

import gzip
import json
import os
import pickle

import pytest

from returnn.datasets import init_dataset
from returnn.datasets.text import load_vocab
from returnn.errors import DatasetError


def _ids(ds, key: str = "data") -> list[list[int]]:
    ds.init_seq_order(epoch=1)
    return [ds.get_data(i, key).tolist() for i in range(ds.num_seqs)]


def test_lm_word_based_with_vocab_file_gzipped_corpus(tmp_path):
    corpus = tmp_path / "train.txt.gz"
    with gzip.open(corpus, "wt", encoding="utf-8") as f:
        f.write("the cat sat\n\nthe dog\n")
    vocab = tmp_path / "vocab.txt"
    vocab.write_text("[END] 0\n[UNKNOWN] 1\nthe 2\ncat 3\nsat 4\n")
    ds = init_dataset({"class": "LmDataset", "corpus_file": str(corpus), "orth_symbols_map_file": str(vocab),
                       "word_based": True, "auto_replace_unknown_symbol": True})
    assert _ids(ds) == [[2, 3, 4, 0], [2, 1, 0]]
    assert ds.num_outputs == {"data": [5, 1]} and ds.is_data_sparse("data")
    assert ds.labels["data"] == ["[END]", "[UNKNOWN]", "the", "cat", "sat"]
    assert ds.get_tag(1) == "line-1"


def test_lm_unknown_word_without_replacement_names_file_and_line(tmp_path):
    corpus = tmp_path / "c.txt"
    corpus.write_text("a b\nb zz\n")
    vocab = tmp_path / "v.txt"
    vocab.write_text("[END]\na\nb\n")
    with pytest.raises(DatasetError, match=r"c\.txt', line 2: token 'zz' is not in the vocabulary"):
        init_dataset({"class": "LmDataset", "corpus_file": str(corpus), "orth_symbols_file": str(vocab), "word_based": True})


def test_lm_char_based_builds_vocab_and_delayed_data(tmp_path):
    corpus = tmp_path / "c.txt"
    corpus.write_text("abca\nbb\n")
    ds = init_dataset({"class": "LmDataset", "corpus_file": str(corpus), "add_delayed_seq_data": True})
    vocab = {tok: i for i, tok in enumerate(ds.labels["data"])}
    assert ds.labels["data"][:3] == ["[END]", "[UNKNOWN]", "[START]"]
    data, delayed = _ids(ds, "data"), _ids(ds, "delayed")
    assert data[0] == [vocab[c] for c in "abca"] + [vocab["[END]"]]
    assert delayed[0] == [vocab["[START]"]] + data[0][:-1]
    assert ds.get_data_keys() == ["data", "delayed"]


def test_lm_char_based_orth_symbols_file_keeps_space_symbol(tmp_path):
    # Same ids as RETURNN's LmDataset on these files: runs of spaces count as one, empty lines are skipped.
    corpus = tmp_path / "c.txt"
    corpus.write_text("hello world\nab  c\n\nabc\n")
    symbols = tmp_path / "syms.txt"
    symbols.write_text("[END]\n[UNKNOWN]\n \na\nb\nc\nd\ne\nh\nl\no\nr\nw\n")
    ds = init_dataset({"class": "LmDataset", "corpus_file": str(corpus), "orth_symbols_file": str(symbols)})
    assert _ids(ds) == [[8, 7, 9, 9, 10, 2, 12, 10, 11, 9, 6, 0], [3, 4, 2, 5, 0], [3, 4, 5, 0]]
    assert ds.num_outputs["data"] == [13, 1]
    assert ds.labels["data"][2] == " "


def _write_translation(tmp_path, vocab_format: str) -> dict:
    src, tgt = {"</S>": 0, "<UNK>": 1, "hallo": 2, "welt": 3}, {"</S>": 0, "<UNK>": 1, "hello": 2, "world": 3}
    for side, vocab in (("source", src), ("target", tgt)):
        if vocab_format == "pkl":
            with open(tmp_path / f"{side}.vocab.pkl", "wb") as f:
                pickle.dump(vocab, f)
        else:
            (tmp_path / f"{side}.vocab.json").write_text(json.dumps(vocab))
    with gzip.open(tmp_path / "source.train.gz", "wt") as f:
        f.write("hallo welt\nwelt foo\n")
    (tmp_path / "target.train").write_text("hello world\nworld\n")
    return {"src": src, "tgt": tgt}


def test_translation_dataset_returnn_layout_gzipped_source(tmp_path):
    _write_translation(tmp_path, "pkl")
    ds = init_dataset({"class": "TranslationDataset", "path": str(tmp_path), "file_postfix": "train",
                       "unknown_label": "<UNK>"})
    assert _ids(ds, "data") == [[2, 3], [3, 1]]
    assert _ids(ds, "classes") == [[2, 3], [3]]
    assert ds.num_outputs == {"data": [4, 1], "classes": [4, 1]}
    assert ds.labels["classes"] == ["</S>", "<UNK>", "hello", "world"]


def _write_returnn_corpus(tmp_path):
    vocab = {"<S>": 0, "</S>": 0, "<UNK>": 1}
    for side, words in (("source", ["hallo", "welt", "du"]), ("target", ["hello", "world", "you"])):
        with open(tmp_path / f"{side}.vocab.pkl", "wb") as f:
            pickle.dump(dict(vocab, **{w: i + 2 for i, w in enumerate(words)}), f)
    (tmp_path / "source.train").write_text("hallo welt\n  welt  du \n\nfoo hallo\n")
    (tmp_path / "target.train").write_text("hello world\nworld you\nyou\nhello\n")


def test_translation_dataset_matches_returnn_sequences(tmp_path):
    # Reference: RETURNN 1.x TranslationDataset(path, file_postfix="train", target_postfix=" </S>",
    # unknown_label="<UNK>") on these files gave data [[2, 3], [3, 4], [], [1, 2]],
    # classes [[2, 3, 0], [3, 4, 0], [4, 0], [2, 0]], tags line-0..3, labels[0] == "<S>".
    _write_returnn_corpus(tmp_path)
    ds = init_dataset({"class": "TranslationDataset", "path": str(tmp_path), "file_postfix": "train",
                       "target_postfix": " </S>", "unknown_label": "<UNK>"})
    assert _ids(ds, "data") == [[2, 3], [3, 4], [], [1, 2]]
    assert _ids(ds, "classes") == [[2, 3, 0], [3, 4, 0], [4, 0], [2, 0]]
    assert [ds.get_tag(i) for i in range(4)] == ["line-0", "line-1", "line-2", "line-3"]
    assert ds.labels["data"] == ["<S>", "<UNK>", "hallo", "welt", "du"]
    assert ds.num_outputs == {"data": [5, 1], "classes": [5, 1]}


def test_translation_dataset_source_only_search_without_reference_seq_list(tmp_path):
    _write_returnn_corpus(tmp_path)
    (tmp_path / "target.train").unlink()
    (tmp_path / "seqs.txt").write_text("3\n1\n")
    spec = {"class": "TranslationDataset", "path": str(tmp_path), "file_postfix": "train", "unknown_label": "<UNK>"}
    ds = init_dataset(dict(spec, source_only=True, source_postfix=" </S>", seq_list_file=str(tmp_path / "seqs.txt")))
    assert _ids(ds, "data") == [[1, 2, 0], [3, 4, 0]]
    assert ds.get_data_keys() == ["data"] and ds.get_tag(0) == "line-3"
    ds = init_dataset(dict(spec, search_without_reference=True))
    assert ds.get_data_keys() == ["data"] and ds.labels["classes"][2] == "hello"
    (tmp_path / "seqs.txt").write_text("7\n")
    with pytest.raises(DatasetError, match=r"seq_list_file .*seqs\.txt', line 1: expected a line number below 4"):
        init_dataset(dict(spec, source_only=True, seq_list_file=str(tmp_path / "seqs.txt")))


def test_translation_dataset_explicit_files_json_vocab_and_errors(tmp_path):
    _write_translation(tmp_path, "json")
    spec = {"class": "TranslationDataset", "source_file": str(tmp_path / "source.train.gz"),
            "target_file": str(tmp_path / "target.train"), "source_vocab": str(tmp_path / "source.vocab.json"),
            "target_vocab": str(tmp_path / "target.vocab.json"), "seq_postfix": None}
    with pytest.raises(DatasetError, match=r"source\.train\.gz', line 2: token 'foo'"):
        init_dataset(spec)
    ds = init_dataset(dict(spec, unknown_label={"data": "<UNK>", "classes": None}))
    assert _ids(ds, "data") == [[2, 3], [3, 1]]
    (tmp_path / "target.train").write_text("hello\n")
    with pytest.raises(DatasetError, match="has 2 lines but"):
        init_dataset(dict(spec, unknown_label="<UNK>"))
    with pytest.raises(DatasetError, match="file_postfix"):
        init_dataset({"class": "TranslationDataset"})


def test_load_vocab_formats_and_errors(tmp_path):
    (tmp_path / "plain.txt").write_text("a\nb\n")
    assert load_vocab(str(tmp_path / "plain.txt")) == {"a": 0, "b": 1}
    (tmp_path / "bad.json").write_text("[1, 2]")
    with pytest.raises(DatasetError, match=r"bad\.json.*mapping"):
        load_vocab(str(tmp_path / "bad.json"))
    with pytest.raises(DatasetError, match=r"cannot read vocabulary file .*none\.pkl"):
        load_vocab(str(tmp_path / "none.pkl"))


class _RunsShell:
    def __init__(self, marker: str):
        self.marker = marker

    def __reduce__(self):
        return os.system, (f"touch {self.marker}",)


def test_load_vocab_pickle_with_code_is_refused_unrun(tmp_path):
    marker = tmp_path / "ran"
    path = tmp_path / "source.vocab.pkl"
    path.write_bytes(pickle.dumps({"a": 0, "b": _RunsShell(str(marker))}))
    with pytest.raises(DatasetError, match=r"vocabulary file '.*source\.vocab\.pkl'.*refers to (os|posix)\.system"):
        load_vocab(str(path))
    assert not marker.exists()


def test_load_vocab_empty_or_truncated_pickle_names_file(tmp_path):
    (tmp_path / "empty.pkl").write_bytes(b"")
    with pytest.raises(DatasetError, match=r"vocabulary file '.*empty\.pkl': the file is empty"):
        load_vocab(str(tmp_path / "empty.pkl"))
    data = pickle.dumps({f"w{i}": i for i in range(100)})
    (tmp_path / "cut.pkl").write_bytes(data[: len(data) // 2])
    with pytest.raises(DatasetError, match=r"vocabulary file '.*cut\.pkl':.*truncated"):
        load_vocab(str(tmp_path / "cut.pkl"))


def test_text_vocab_and_json_vocab_not_utf8_name_file_and_line(tmp_path):
    (tmp_path / "vocab.txt").write_bytes(b"a 0\nb 1\n\xe9t\xe9 2\n")
    with pytest.raises(DatasetError, match=r"vocabulary: file '.*vocab\.txt', line 3: not valid UTF-8"):
        load_vocab(str(tmp_path / "vocab.txt"))
    (tmp_path / "vocab.json").write_bytes(b'{"a": 0,\n"\xff": 1}')
    with pytest.raises(DatasetError, match=r"vocab\.json', line 2: not valid UTF-8"):
        load_vocab(str(tmp_path / "vocab.json"))


def test_lm_corpus_not_utf8_names_file_and_line(tmp_path):
    corpus = tmp_path / "train.txt.gz"
    with gzip.open(corpus, "wb") as f:
        f.write("one\ntwo\nth\u00e9\n".encode("utf-8") + b"f\xfcnf\n")
    with pytest.raises(DatasetError, match=r"file '.*train\.txt\.gz', line 4: not valid UTF-8 \(byte b'\\xfc'"):
        init_dataset({"class": "LmDataset", "corpus_file": str(corpus)})


def test_translation_truncated_gzip_names_file(tmp_path):
    _write_translation(tmp_path, "pkl")
    whole = (tmp_path / "source.train.gz").read_bytes()
    (tmp_path / "source.train.gz").write_bytes(whole[:-10])
    with pytest.raises(DatasetError, match=r"cannot read file '.*source\.train\.gz': the gzip data is truncated or corrupt"):
        init_dataset({"class": "TranslationDataset", "path": str(tmp_path), "file_postfix": "train"})
    (tmp_path / "source.train.gz").write_bytes(b"\x1f\x8b\x08\x00garbage")
    with pytest.raises(DatasetError, match=r"source\.train\.gz'"):
        init_dataset({"class": "TranslationDataset", "path": str(tmp_path), "file_postfix": "train"})
