"""RETURNN's chunking: boundaries, per-key sizes and steps, whole short keys, parse errors."""

from __future__ import annotations

import pytest

from returnn.datasets.chunking import chunk_sequence, parse_chunking
from returnn.errors import DatasetError


def _bounds(lens, chunking, key="data", **kwargs) -> list[tuple[int, int]]:
    return [(c.start[key], c.end[key]) for c in chunk_sequence(0, lens, parse_chunking(chunking), **kwargs)]


@pytest.mark.parametrize(
    "value,expected",
    [("100:50", (100, 50)), ("64", (64, 64)), (20, (20, 20)), ((10, 5), (10, 5)), (None, None), ("0", None), (0, None),
     (({"data": 4, "classes": 2}, {"data": 2, "classes": 1}), ({"data": 4, "classes": 2}, {"data": 2, "classes": 1}))],
)
def test_parse_chunking_forms(value, expected):
    assert parse_chunking(value) == expected


@pytest.mark.parametrize("bad", ["10:5:2", "ten", (1, 2, 3), "5:-1"])
def test_parse_chunking_rejects_bad_values(bad):
    with pytest.raises(DatasetError, match="chunking"):
        parse_chunking(bad)


def test_chunk_boundaries_size_and_step():
    assert _bounds({"data": 10}, "4:2") == [(0, 4), (2, 6), (4, 8), (6, 10), (8, 10)]
    assert _bounds({"data": 10}, "5:5") == [(0, 5), (5, 10)]
    assert _bounds({"data": 11}, "5") == [(0, 5), (5, 10), (10, 11)]
    assert _bounds({"data": 3}, "5:2") == [(0, 3), (2, 3)]
    assert _bounds({"data": 0}, "5:2") == []


def test_min_chunk_size_drops_short_tails():
    assert _bounds({"data": 11}, "5", min_chunk_size=1) == [(0, 5), (5, 10)]
    assert _bounds({"data": 12}, "5", min_chunk_size=1) == [(0, 5), (5, 10), (10, 12)]


def test_per_key_chunking_with_different_steps():
    lens = {"data": 10, "classes": 5}
    spec = ({"data": 4, "classes": 2}, {"data": 2, "classes": 1})
    assert _bounds(lens, spec, "data") == [(0, 4), (2, 6), (4, 8), (6, 10), (8, 10)]
    assert _bounds(lens, spec, "classes") == [(0, 2), (1, 3), (2, 4), (3, 5), (4, 5)]


def test_lower_rate_key_that_runs_out_gives_empty_chunks():
    spec = ({"data": 4, "classes": 2}, {"data": 4, "classes": 2})
    assert _bounds({"data": 12, "classes": 3}, spec, "classes") == [(0, 2), (2, 3), (3, 3)]


def test_keys_of_length_one_or_without_size_are_whole():
    assert _bounds({"data": 10, "speaker": 1}, "4:4", "speaker") == [(0, 1)] * 3
    spec = ({"data": 4}, {"data": 4})
    assert _bounds({"data": 10, "orth": 7}, spec, "orth") == [(0, 7)] * 3


def test_different_lengths_with_same_step_is_an_error():
    with pytest.raises(DatasetError, match=r"sequence 'tag-x'.*'data' and 'classes' have different lengths \(10 vs 4\)"):
        list(chunk_sequence(0, {"data": 10, "classes": 4}, parse_chunking("4:2"), tag="tag-x"))
