"""Synthetic datasets: 12AX rule, Dummy values, StaticDataset inference, symbol tasks, speech-like CTC task."""

from __future__ import annotations

import numpy as np
import pytest

from returnn.datasets import Task12AXDataset, init_dataset
from returnn.errors import DatasetError


def _seqs(ds, epoch: int = 1) -> list[dict]:
    ds.init_seq_order(epoch=epoch)
    return [{k: ds.get_data(i, k) for k in ds.get_data_keys()} for i in range(ds.num_seqs)]


def _12ax_reference(symbols: str) -> list[int]:
    """Target R iff the current symbol closes AX under digit 1 or BY under digit 2."""
    out = []
    for t, ch in enumerate(symbols):
        digits = [c for c in symbols[: t + 1] if c in "123"]
        last = digits[-1] if digits else None
        pair = symbols[t - 1 : t + 1] if t > 0 else ""
        out.append(int((last == "1" and pair == "AX") or (last == "2" and pair == "BY")))
    return out


def test_task12ax_targets_follow_the_rule():
    ds = init_dataset({"class": "Task12AXDataset", "num_seqs": 30})
    assert ds.num_outputs == {"data": [9, 2], "classes": [2, 1]}
    hits = 0
    for seq in _seqs(ds):
        assert (seq["data"].sum(axis=1) == 1).all()
        symbols = "".join(Task12AXDataset.SYMBOLS[i] for i in seq["data"].argmax(axis=1))
        assert list(seq["classes"]) == _12ax_reference(symbols)
        hits += int(seq["classes"].sum())
    assert hits > 0


def test_generated_data_depends_on_epoch_unless_fixed_seed():
    ds = init_dataset({"class": "CopyTaskDataset", "num_seqs": 5})
    a, b = _seqs(ds, 1), _seqs(ds, 2)
    assert any(len(x["data"]) != len(y["data"]) or (x["data"] != y["data"]).any() for x, y in zip(a, b))
    fixed = init_dataset({"class": "CopyTaskDataset", "num_seqs": 5, "fixed_random_seed": 9})
    for x, y in zip(_seqs(fixed, 1), _seqs(fixed, 2)):
        np.testing.assert_array_equal(x["data"], y["data"])


def test_sequence_content_does_not_depend_on_access_order():
    ds = init_dataset({"class": "SyntheticSpeechDataset", "num_seqs": 6, "fixed_random_seed": 1})
    forward = _seqs(ds)
    ds.init_seq_order(epoch=1)
    backward = [ds.get_data(i, "data") for i in reversed(range(6))][::-1]
    for x, y in zip(forward, backward):
        np.testing.assert_array_equal(x["data"], y)


@pytest.mark.parametrize("cls,fn", [("CopyTaskDataset", lambda x: x), ("ReverseTaskDataset", lambda x: x[::-1]),
                                    ("SortTaskDataset", np.sort)])
def test_symbol_tasks(cls, fn):
    ds = init_dataset({"class": cls, "num_seqs": 20, "nsymbols": 6, "minlen": 2, "maxlen": 9})
    lens = set()
    for seq in _seqs(ds):
        assert seq["data"].dtype == np.int32 and 0 <= seq["data"].min() and seq["data"].max() < 6
        np.testing.assert_array_equal(seq["classes"], fn(seq["data"]))
        lens.add(len(seq["data"]))
        assert 2 <= len(seq["data"]) <= 9
    assert len(lens) > 1
    assert ds.is_data_sparse("data") and ds.is_data_sparse("classes")
    with pytest.raises(DatasetError, match="minlen"):
        init_dataset({"class": cls, "minlen": 5, "maxlen": 2})


def test_speech_like_task_is_ctc_shaped():
    ds = init_dataset({"class": "SyntheticSpeechDataset", "num_seqs": 10, "input_dim": 8, "num_classes": 5})
    assert ds.num_outputs == {"data": [8, 2], "classes": [5, 1]}
    for seq in _seqs(ds):
        assert seq["data"].dtype == np.float32 and seq["data"].shape[1] == 8
        assert 0 <= seq["classes"].min() and seq["classes"].max() < 5
        assert len(seq["data"]) >= 2 * len(seq["classes"]) + 1  # room for CTC blanks between repeats


def test_dummy_dataset_values():
    ds = init_dataset({"class": "DummyDataset", "input_dim": 2, "output_dim": 3, "num_seqs": 4, "seq_len": 3})
    seqs = _seqs(ds)
    assert len(seqs) == 4 and seqs[1]["data"].shape == (3, 2)
    np.testing.assert_allclose(seqs[1]["data"].ravel(), ((np.arange(1, 7) % 10) - 5) / 10, rtol=1e-6)
    np.testing.assert_array_equal(seqs[1]["classes"], np.arange(7, 10) % 3)


def test_static_dataset_infers_dims_and_checks_keys():
    ds = init_dataset({"class": "StaticDataset", "data": [
        {"data": np.zeros((2, 4), np.float32), "classes": np.array([3, 1]), "score": np.array([0.5])},
        {"data": np.zeros((1, 4), np.float32), "classes": np.array([6]), "score": np.array([1.5])}]})
    assert ds.num_outputs == {"data": [4, 2], "classes": [7, 1], "score": [1, 1]}
    assert not ds.is_data_sparse("score") and ds.get_data_shape("score") == []
    with pytest.raises(DatasetError, match=r"sequence 1 has keys"):
        init_dataset({"class": "StaticDataset", "data": [{"data": np.zeros(1)}, {"classes": np.zeros(1)}]})
    with pytest.raises(DatasetError, match="non-empty"):
        init_dataset({"class": "StaticDataset", "data": []})


def test_number_base_convert_matches_python_int_parsing():
    ds = init_dataset({"class": "TaskNumberBaseConvertDataset", "num_seqs": 40})
    assert ds.num_outputs == {"data": [8, 1], "classes": [2, 1]}
    assert ds.is_data_sparse("data") and ds.is_data_sparse("classes")
    lens = set()
    for seq in _seqs(ds):
        digits = seq["data"]
        assert digits.dtype == np.int32 and 1 <= len(digits) <= 8 and 0 <= digits.min() and digits.max() < 8
        number = int("".join(map(str, digits)), 8)
        assert "".join(map(str, seq["classes"])) == np.base_repr(number, 2)
        lens.add((len(digits), len(seq["classes"])))
    assert len({a for a, _ in lens}) > 1 and any(a != b for a, b in lens)


def test_number_base_convert_other_bases_and_zero():
    ds = init_dataset({"class": "TaskNumberBaseConvertDataset", "input_base": 16, "output_base": 10,
                       "min_input_seq_len": 2, "max_input_seq_len": 3, "num_seqs": 20})
    assert ds.labels["data"][-1] == "f" and ds.labels["classes"] == list("0123456789")
    for seq in _seqs(ds):
        number = int("".join(ds.labels["data"][d] for d in seq["data"]), 16)
        assert "".join(map(str, seq["classes"])) == str(number)
    assert ds.convert([0, 0]) == [0]
    with pytest.raises(DatasetError, match="output_base must be in 2..36"):
        init_dataset({"class": "TaskNumberBaseConvertDataset", "output_base": 1})
    with pytest.raises(DatasetError, match="min_input_seq_len"):
        init_dataset({"class": "TaskNumberBaseConvertDataset", "min_input_seq_len": 0})


def test_copy_task_lengths_grow_with_epoch_factor():
    ds = init_dataset({"class": "CopyTaskDataset", "nsymbols": 4, "num_seqs": 200, "minlen": 1,
                       "maxlen_epoch_factor": 5, "fixed_random_seed": 1})
    for epoch in (1, 3):
        lens = [len(seq["data"]) for seq in _seqs(ds, epoch)]
        assert min(lens) == 1 and max(lens) == 5 * epoch  # maxlen defaults to 0 with a factor, as in RETURNN
    with pytest.raises(DatasetError, match="epoch 1: need 0 <= min length <= max length"):
        _seqs(init_dataset({"class": "CopyTaskDataset", "minlen": 3, "maxlen": 0, "maxlen_epoch_factor": 1}))
