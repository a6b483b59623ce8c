"""seq_ordering variants, partition_epoch and fixed_random_subset."""

from __future__ import annotations

import numpy as np
import pytest

from returnn.datasets import seq_order
from returnn.errors import DatasetError

LENS = [5, 1, 9, 3, 7, 2, 8, 6, 4, 10, 0, 11]


def _order(method: str, seed: int = 1) -> list[int]:
    return list(seq_order.order_corpus(range(len(LENS)), method, seed=seed, get_seq_len=lambda i: LENS[i]))


def test_default_reverse_sorted():
    assert _order("default") == list(range(12))
    assert _order("reverse") == list(range(11, -1, -1))
    assert [LENS[i] for i in _order("sorted")] == sorted(LENS)
    assert [LENS[i] for i in _order("sorted_reverse")] == sorted(LENS, reverse=True)


def test_random_is_a_reproducible_permutation_per_seed():
    a = _order("random", seed=1)
    assert sorted(a) == list(range(12)) and a == _order("random", seed=1)
    assert a != _order("random", seed=2)
    assert _order("random:7", seed=1) == _order("random:7", seed=1) != a


@pytest.mark.parametrize("method,bins", [("laplace:3", 3), ("laplace:.4", 3), ("laplace:.5", 2)])
def test_laplace_sorts_within_bins_alternating(method, bins):
    order = _order(method)
    assert sorted(order) == list(range(12))
    n = len(order)
    for b in range(bins):
        part = [LENS[i] for i in order[b * n // bins : (b + 1) * n // bins]]
        assert part == sorted(part, reverse=(b % 2 == 1))


def test_laplace_with_seed_argument():
    assert _order("laplace:3:5") == _order("laplace:3:5") != _order("laplace:3")
    with pytest.raises(DatasetError, match="integer seed"):
        _order("laplace:3:x")


def test_sort_bin_shuffle_keeps_sorted_bins():
    order = _order("sort_bin_shuffle:3")
    assert sorted(order) == list(range(12))
    lens = [LENS[i] for i in order]
    for b in range(3):
        assert lens[b * 4 : b * 4 + 4] == sorted(lens[b * 4 : b * 4 + 4])


def test_unknown_method_and_bad_args_are_errors():
    with pytest.raises(DatasetError, match=r"unknown method 'sortd'"):
        _order("sortd")
    with pytest.raises(DatasetError, match=r"laplace:x"):
        _order("laplace:x")
    with pytest.raises(DatasetError, match="needs sequence lengths"):
        seq_order.order_corpus([0, 1], "sorted", seed=1)


def test_partition_bounds_cover_everything_once():
    for num_seqs in (0, 7, 10, 11):
        parts = [seq_order.partition_bounds(num_seqs, 3, ep) for ep in (1, 2, 3)]
        assert parts[0][0] == 0 and parts[-1][1] == num_seqs
        assert all(parts[i][1] == parts[i + 1][0] for i in range(2))
        assert max(e - s for s, e in parts) - min(e - s for s, e in parts) <= 1
    assert seq_order.partition_bounds(10, 3, 4) == seq_order.partition_bounds(10, 3, 1)


def test_seed_is_shared_by_sub_epochs():
    seeds = [seq_order.random_seed_for_epoch(ep, partition_epoch=2) for ep in (1, 2, 3, 4)]
    assert seeds[0] == seeds[1] != seeds[2] == seeds[3]


def test_fixed_random_subset_count_and_fraction():
    a = seq_order.fixed_random_subset_indices(100, 10)
    assert len(a) == 10 and list(a) == sorted(set(a)) and list(a) == list(seq_order.fixed_random_subset_indices(100, 10))
    assert len(seq_order.fixed_random_subset_indices(100, 0.25)) == 25
    with pytest.raises(DatasetError, match="fixed_random_subset"):
        seq_order.fixed_random_subset_indices(100, -1)
    assert np.all(seq_order.fixed_random_subset_indices(5, 10) == np.arange(5))
