"""Text datasets: ``LmDataset`` (one sentence a line) and ``TranslationDataset`` (parallel source/target).

Text files may be gzipped (``.gz``). Vocabularies are RETURNN pickles ({token: id}), JSON dicts
({token: id}, as Sockeye writes them), "token id" lines, or one token a line (id = line number).
"""

from __future__ import annotations

import collections
import json
import os
import pickle
from typing import Sequence

import numpy as np

from returnn.datasets.base import register_dataset
from returnn.datasets.in_memory import InMemoryDataset
from returnn.datasets.text_files import read_text, read_text_lines
from returnn.errors import DatasetError
from returnn.util.plain_pickle import load_plain_pickle


def load_vocab(path: str) -> dict[str, int]:
    """Token -> id from a .pkl / .json dict, "token id" lines, or one token a line.

    Pickles are read as plain data only (see ``returnn.util.plain_pickle``): one that names a class or
    function is refused, nothing in it runs.
    """
    try:
        if path.endswith(".pkl"):
            with open(path, "rb") as f:
                vocab = load_plain_pickle(f)
        elif path.endswith(".json"):
            vocab = json.loads(read_text(path))
        else:
            lines = [line for line in read_text_lines(path) if line.strip()]
            pairs = [line.rsplit(None, 1) for line in lines]
            if pairs and all(len(p) == 2 and p[1].isdigit() for p in pairs):
                vocab = {tok: int(idx) for tok, idx in pairs}
            else:
                vocab = {line.strip(): i for i, line in enumerate(lines)}
    except DatasetError as exc:
        raise DatasetError(f"vocabulary: {exc}") from None
    except (OSError, ValueError, pickle.UnpicklingError) as exc:
        raise DatasetError(f"cannot read vocabulary file {path!r}: {exc}") from None
    if not isinstance(vocab, dict) or not all(isinstance(v, int) for v in vocab.values()):
        raise DatasetError(f"vocabulary file {path!r}: expected a mapping token -> int id")
    return vocab


def load_symbols_list(path: str) -> dict[str, int]:
    """RETURNN's ``orth_symbols_file``: one symbol a line, taken verbatim (a line " " is the space), id = line number."""
    return {sym: i for i, sym in enumerate(read_text_lines(path))}


def vocab_labels(vocab: dict[str, int]) -> list[str]:
    """Id -> token list (gaps filled with empty strings); of several tokens with one id, the last in sort order, as RETURNN."""
    labels = [""] * (max(vocab.values(), default=-1) + 1)
    for token, idx in sorted(vocab.items()):
        labels[idx] = token
    return labels


def encode(tokens: Sequence[str], vocab: dict[str, int], unknown: str | None, *, where: str) -> np.ndarray:
    """Token ids; unknown tokens map to ``unknown`` if given, else raise a DatasetError naming ``where``."""
    unk_id = vocab.get(unknown) if unknown is not None else None
    ids = []
    for tok in tokens:
        idx = vocab.get(tok, unk_id)
        if idx is None:
            hint = f" and unknown symbol {unknown!r} is not in the vocabulary" if unknown is not None else ""
            raise DatasetError(f"{where}: token {tok!r} is not in the vocabulary{hint}")
        ids.append(idx)
    return np.array(ids, dtype=np.int32)


class _TextDataset(InMemoryDataset):
    """In-memory sequences of token ids by data key."""


@register_dataset
class LmDataset(_TextDataset):
    """Language-model data: each non-empty line of ``corpus_file`` is a sequence ``data`` of word or char ids + end symbol.

    Config: ``{"class": "LmDataset", "corpus_file": "train.txt.gz", "orth_symbols_map_file": "vocab.txt", "word_based": True}``
    Without a vocabulary file, one is built from the corpus (tokens by frequency, then alphabetically).
    """

    def __init__(
        self,
        corpus_file: str | Sequence[str],
        orth_symbols_file: str | None = None,
        orth_symbols_map_file: str | None = None,
        word_based: bool = False,
        seq_end_symbol: str | None = "[END]",
        unknown_symbol: str | None = "[UNKNOWN]",
        auto_replace_unknown_symbol: bool = False,
        add_delayed_seq_data: bool = False,
        delayed_seq_data_start_symbol: str = "[START]",
        **kwargs,
    ):
        super().__init__(**kwargs)
        files = [corpus_file] if isinstance(corpus_file, str) else list(corpus_file)
        self.word_based = bool(word_based)
        lines = [(path, n + 1, line) for path in files for n, line in enumerate(read_text_lines(path)) if line.strip()]
        tokenized = [(path, n, self._tokens(line)) for path, n, line in lines]
        specials = [s for s in (seq_end_symbol, unknown_symbol) if s is not None]
        if add_delayed_seq_data:
            specials.append(delayed_seq_data_start_symbol)
        vocab_file = orth_symbols_map_file or orth_symbols_file
        if orth_symbols_map_file:
            self.vocab = load_vocab(orth_symbols_map_file)
        elif orth_symbols_file:
            self.vocab = load_symbols_list(orth_symbols_file)
        else:
            self.vocab = self._build_vocab([t for _, _, t in tokenized], specials)
        unknown = unknown_symbol if (auto_replace_unknown_symbol or not vocab_file) else None
        for path, n, tokens in tokenized:
            if seq_end_symbol is not None:
                tokens = tokens + [seq_end_symbol]
            seq = {"data": encode(tokens, self.vocab, unknown, where=f"LmDataset: file {path!r}, line {n}")}
            if add_delayed_seq_data:
                start = encode([delayed_seq_data_start_symbol], self.vocab, None, where="LmDataset: delayed_seq_data_start_symbol")
                seq["delayed"] = np.concatenate([start, seq["data"][:-1]])
            self._seqs.append(seq)
            self._tags.append(f"line-{len(self._tags)}")
        dim = max(self.vocab.values(), default=-1) + 1
        for key in ["data"] + (["delayed"] if add_delayed_seq_data else []):
            self.num_outputs[key] = [dim, 1]
            self._dtypes[key] = "int32"
            self.labels[key] = vocab_labels(self.vocab)

    def _tokens(self, line: str) -> list[str]:
        """Words (whitespace-split) or characters of a line; runs of spaces count as one, as in RETURNN."""
        if self.word_based:
            return line.split()
        chars: list[str] = []
        for c in line.strip():
            if not (c == " " and chars and chars[-1] == " "):
                chars.append(c)
        return chars

    @staticmethod
    def _build_vocab(sentences: list[list[str]], specials: list[str]) -> dict[str, int]:
        """Special symbols first, then tokens by descending frequency (ties alphabetically)."""
        counts = collections.Counter(tok for sent in sentences for tok in sent)
        tokens = list(dict.fromkeys(specials)) + sorted((t for t in counts if t not in specials), key=lambda t: (-counts[t], t))
        return {tok: i for i, tok in enumerate(tokens)}


def _text_file(path: str) -> str:
    """``path``, or ``path + ".gz"`` if only that exists."""
    if not os.path.exists(path) and os.path.exists(path + ".gz"):
        return path + ".gz"
    return path


@register_dataset
class TranslationDataset(_TextDataset):
    """Parallel text: ``data`` (source ids) and ``classes`` (target ids), one sentence a line.

    Config (RETURNN layout): ``{"class": "TranslationDataset", "path": "data/", "file_postfix": "train"}`` reads
    ``source.train`` / ``target.train`` (or ``.gz``) and ``source.vocab.pkl`` / ``target.vocab.pkl``; or name the
    files directly with ``source_file``, ``target_file``, ``source_vocab``, ``target_vocab`` (pkl, json or text).
    A sequence is ``(line.strip() + source_postfix).split()`` mapped to ids, exactly as in RETURNN; ``seq_postfix``
    (ids, none by default; not a RETURNN option) is appended after that.
    """

    def __init__(
        self,
        path: str | None = None,
        file_postfix: str | None = None,
        source_postfix: str = "",
        target_postfix: str = "",
        source_only: bool = False,
        search_without_reference: bool = False,
        unknown_label: str | dict | None = None,
        seq_list_file: str | None = None,
        seq_postfix: Sequence[int] | None = None,
        source_file: str | None = None,
        target_file: str | None = None,
        source_vocab: str | None = None,
        target_vocab: str | None = None,
        **kwargs,
    ):
        super().__init__(**kwargs)
        sides = [("source", "data", source_file, source_vocab, source_postfix)]
        if not source_only:
            sides.append(("target", "classes", target_file, target_vocab, target_postfix))
        unknown = unknown_label if isinstance(unknown_label, dict) else {"data": unknown_label, "classes": unknown_label}
        postfix = np.array(list(seq_postfix or []), dtype=np.int32)
        columns = {}
        for side, key, text, vocab_path, extra in sides:
            if text is None or vocab_path is None:
                if path is None or (text is None and file_postfix is None):
                    raise DatasetError(f"TranslationDataset: give \"path\" and \"file_postfix\", or \"{side}_file\" and \"{side}_vocab\"")
                text = text or os.path.join(path, f"{side}.{file_postfix}")
                vocab_path = vocab_path or os.path.join(path, f"{side}.vocab.pkl")
            vocab = load_vocab(vocab_path)
            self.labels[key] = vocab_labels(vocab)
            if key == "classes" and search_without_reference:
                continue  # the target labels are known (to write hypotheses), but no reference text is read
            self.num_outputs[key] = [max(vocab.values(), default=-1) + 1, 1]
            self._dtypes[key] = "int32"
            text = _text_file(text)
            columns[key] = (text, [
                np.concatenate([encode((line.strip() + extra).split(), vocab, unknown.get(key), where=f"TranslationDataset: file {text!r}, line {n + 1}"), postfix])
                for n, line in enumerate(read_text_lines(text))
            ])
        (src_file, src), (tgt_file, tgt) = columns["data"], columns.get("classes", (None, None))
        if tgt is not None and len(src) != len(tgt):
            raise DatasetError(f"TranslationDataset: {src_file!r} has {len(src)} lines but {tgt_file!r} has {len(tgt)}")
        order = range(len(src)) if seq_list_file is None else self._line_numbers(seq_list_file, len(src))
        self._seqs = [{"data": src[i], **({"classes": tgt[i]} if tgt is not None else {})} for i in order]
        self._tags = [f"line-{i}" for i in order]

    @staticmethod
    def _line_numbers(seq_list_file: str, num_lines: int) -> list[int]:
        """RETURNN's ``seq_list_file``: one line number a line, the sequences used and their base order."""
        numbers = []
        for n, line in enumerate(read_text_lines(seq_list_file)):
            if not line.strip().isdigit() or int(line) >= num_lines:
                raise DatasetError(f"TranslationDataset: seq_list_file {seq_list_file!r}, line {n + 1}: expected a line "
                                   f"number below {num_lines} (the corpus size), got {line!r}")
            numbers.append(int(line))
        return numbers
