"""Edit distance, error rates and corpus BLEU against known values and a recursive reference."""

from __future__ import annotations

import functools
import math
import random
import time

import pytest

from returnn.util.edit_distance import ErrorRate, corpus_bleu, edit_distance


def _reference_distance(ref, hyp) -> int:
    """Levenshtein by the textbook recursion, memoized; slow but obviously right."""
    @functools.lru_cache(maxsize=None)
    def dist(i: int, j: int) -> int:
        if i == 0 or j == 0:
            return i + j
        return min(dist(i - 1, j) + 1, dist(i, j - 1) + 1, dist(i - 1, j - 1) + (ref[i - 1] != hyp[j - 1]))
    return dist(len(ref), len(hyp))


@pytest.mark.parametrize("ref, hyp, want", [
    ("kitten", "sitting", 3),
    ("flaw", "lawn", 2),
    ("", "", 0),
    ("abc", "", 3),
    ("", "ab", 2),
    ("abc", "abc", 0),
    ("abc", "cba", 2),
    ("intention", "execution", 5),
    (["the", "cat", "sat"], ["the", "sat"], 1),
    ([1, 2, 3, 4], [2, 3, 4, 5], 2),
])
def test_edit_distance_known_values(ref, hyp, want):
    assert edit_distance(ref, hyp) == want
    assert edit_distance(hyp, ref) == want  # symmetric with unit costs


def test_edit_distance_matches_recursion_on_random_inputs():
    rng = random.Random(0)
    for _ in range(300):
        ref = tuple(rng.randrange(4) for _ in range(rng.randrange(9)))
        hyp = tuple(rng.randrange(4) for _ in range(rng.randrange(9)))
        assert edit_distance(ref, hyp) == _reference_distance(ref, hyp), (ref, hyp)


def test_edit_distance_returns_plain_int_and_is_fast_on_long_seqs():
    rng = random.Random(1)
    ref = [rng.randrange(50) for _ in range(1000)]
    hyp = [rng.randrange(50) for _ in range(1000)]
    start = time.perf_counter()
    dist = edit_distance(ref, hyp)
    assert time.perf_counter() - start < 2.0
    assert type(dist) is int and 0 < dist <= 1000
    assert edit_distance(ref, ref[:500] + ref[501:]) == 1


def test_error_rate_accumulates_edits_and_seq_errors():
    er = ErrorRate()
    assert math.isnan(er.rate) and math.isnan(er.seq_error_rate) and er.num_seqs == 0
    assert er.add([1, 2, 3], [1, 2, 3]) == 0
    assert er.add([1, 2, 3, 4], [1, 3, 4, 5]) == 2
    er.add([7], [])
    assert er.rate == pytest.approx(3 / 8)
    assert er.seq_error_rate == pytest.approx(2 / 3)
    assert er.num_seqs == 3
    assert er.summary() == "label error rate 37.50% (3 edits / 8 labels), sequence errors 2/3"


def test_error_rate_summary_without_refs_and_with_unit():
    assert ErrorRate().summary() == "label error rate n/a (0 edits / 0 labels), sequence errors 0/0"
    er = ErrorRate(unit="word")
    er.add("a b".split(), "a c".split())
    assert er.summary() == "word error rate 50.00% (1 edits / 2 words), sequence errors 1/1"


def test_bleu_identical_is_100():
    refs = ["the cat sat on the mat".split(), "a dog barks at the moon tonight".split()]
    assert corpus_bleu(refs, refs) == pytest.approx(100.0)


def test_bleu_known_value_with_brevity_penalty():
    # hyp 5 tokens vs ref 6; precisions 5/5, 3/4, 2/3, 1/2 -> geometric mean (1/4)^(1/4); BP exp(1 - 6/5)
    refs = ["the cat sat on the mat".split()]
    hyps = ["the cat sat on mat".split()]
    assert corpus_bleu(refs, hyps) == pytest.approx(100 * 0.25 ** 0.25 * math.exp(-0.2))


def test_bleu_clips_repeated_ngrams():
    # "the" occurs twice in the ref, so only 2 of the 4 hyp unigrams count; BP exp(1 - 6/4)
    refs = ["the cat is on the mat".split()]
    hyps = ["the the the the".split()]
    assert corpus_bleu(refs, hyps, max_n=1) == pytest.approx(50 * math.exp(-0.5))


def test_bleu_sums_counts_over_the_corpus():
    # Alone, the second pair scores 0 (no trigram match, no 4-grams); summed counts do not:
    # unigrams 4/4 + 2/3, bigrams 3/3 + 1/2, trigrams 2/2 + 0/1, 4-grams 1/1 + 0/0; a short second hyp
    # makes the lengths 4 + 3 = 7 vs 4 + 4 = 8.
    refs = ["a b c d".split(), "x y z q".split()]
    hyps = ["a b c d".split(), "x y w".split()]
    want = 100 * ((6 / 7) * (4 / 5) * (2 / 3) * 1) ** 0.25 * math.exp(1 - 8 / 7)
    assert corpus_bleu(refs, hyps) == pytest.approx(want)


def test_bleu_is_zero_when_a_precision_is_zero():
    assert corpus_bleu([["a", "b", "c", "d"]], [["a", "c", "b", "d"]]) == 0.0  # no matching bigram
    assert corpus_bleu([["a", "b"]], [["a", "b"]]) == 0.0  # no 3- or 4-grams at all
    assert corpus_bleu([["a"]], [[]]) == 0.0


def test_bleu_rejects_mismatched_lengths():
    with pytest.raises(ValueError, match="2 references but 1 hypotheses"):
        corpus_bleu([["a"], ["b"]], [["a"]])
