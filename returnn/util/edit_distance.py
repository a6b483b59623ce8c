"""Scores of search output against references: Levenshtein distance, error rates, corpus BLEU."""

from __future__ import annotations

import math
from collections import Counter
from typing import Hashable, Sequence

import numpy as np


def edit_distance(ref: Sequence[Hashable], hyp: Sequence[Hashable]) -> int:
    """Levenshtein distance: the fewest substitutions, insertions and deletions (cost 1 each) turning ref into hyp."""
    if len(ref) == 0 or len(hyp) == 0:
        return len(ref) + len(hyp)
    ids: dict[Hashable, int] = {}
    ref_ids = [ids.setdefault(token, len(ids)) for token in ref]
    hyp_ids = np.array([ids.setdefault(token, len(ids)) for token in hyp], dtype=np.int64)
    steps = np.arange(len(hyp) + 1, dtype=np.int64)
    row = steps.copy()  # distances from the empty ref prefix to each hyp prefix
    for i, ref_id in enumerate(ref_ids, start=1):
        diag = row[:-1] + (hyp_ids != ref_id)  # substitution or match
        up = row[1:] + 1  # deletion of the ref token
        best = np.empty_like(row)
        best[0] = i
        best[1:] = np.minimum(diag, up)
        # Insertions chain along the row: d[j] = min_k<=j (best[k] + j - k), a running minimum.
        row = np.minimum.accumulate(best - steps) + steps
    return int(row[-1])


class ErrorRate:
    """Accumulates edit distances over sequences: label (or word) error rate and sequence error rate."""

    def __init__(self, *, unit: str = "label"):
        self.unit = unit
        self.edits = 0
        self.ref_len = 0
        self.num_seqs = 0
        self.num_seq_errors = 0

    def add(self, ref: Sequence[Hashable], hyp: Sequence[Hashable]) -> int:
        """Score one sequence; returns its edit distance."""
        edits = edit_distance(ref, hyp)
        self.edits += edits
        self.ref_len += len(ref)
        self.num_seqs += 1
        self.num_seq_errors += int(edits > 0)
        return edits

    @property
    def rate(self) -> float:
        """Edits per reference token; nan before any reference token was seen."""
        return self.edits / self.ref_len if self.ref_len else math.nan

    @property
    def seq_error_rate(self) -> float:
        """Fraction of sequences with at least one edit; nan before any sequence was added."""
        return self.num_seq_errors / self.num_seqs if self.num_seqs else math.nan

    def summary(self) -> str:
        """``label error rate 12.34% (56 edits / 454 labels), sequence errors 3/40``."""
        rate = "n/a" if math.isnan(self.rate) else f"{100 * self.rate:.2f}%"
        return (f"{self.unit} error rate {rate} ({self.edits} edits / {self.ref_len} {self.unit}s), "
                f"sequence errors {self.num_seq_errors}/{self.num_seqs}")


def _ngrams(tokens: Sequence[str], n: int) -> Counter:
    return Counter(tuple(tokens[i:i + n]) for i in range(len(tokens) - n + 1))


def corpus_bleu(refs: list[list[str]], hyps: list[list[str]], max_n: int = 4) -> float:
    """Corpus BLEU in percent (0..100), one reference per hypothesis (Papineni et al., 2002).

    Clipped n-gram counts and hypothesis n-gram totals are summed over the corpus before the precisions
    are taken; their geometric mean times the brevity penalty ``exp(1 - r/c)`` (if ``c < r``) is the score.
    No smoothing: a precision of zero (or no hypothesis n-grams of some order) gives 0.
    """
    if len(refs) != len(hyps):
        raise ValueError(f"corpus_bleu: {len(refs)} references but {len(hyps)} hypotheses")
    if max_n < 1:
        raise ValueError(f"corpus_bleu: max_n must be >= 1, got {max_n}")
    matches = [0] * max_n
    totals = [0] * max_n
    for ref, hyp in zip(refs, hyps):
        for n in range(1, max_n + 1):
            hyp_ngrams = _ngrams(hyp, n)
            ref_ngrams = _ngrams(ref, n)
            matches[n - 1] += sum(min(count, ref_ngrams[gram]) for gram, count in hyp_ngrams.items())
            totals[n - 1] += sum(hyp_ngrams.values())
    if min(matches) == 0:
        return 0.0
    log_precision = sum(math.log(m / t) for m, t in zip(matches, totals)) / max_n
    hyp_len = sum(len(hyp) for hyp in hyps)
    ref_len = sum(len(ref) for ref in refs)
    log_brevity = min(0.0, 1.0 - ref_len / hyp_len)
    return 100.0 * math.exp(log_precision + log_brevity)
