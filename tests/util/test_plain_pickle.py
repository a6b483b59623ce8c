"""Plain-data pickles load; pickles that name any class or function are refused before anything runs."""

from __future__ import annotations

import collections
import io
import os
import pickle

import pytest

from returnn.util.plain_pickle import load_plain_pickle


class _RunsShell:
    def __init__(self, marker: str):
        self.marker = marker

    def __reduce__(self):
        return os.system, (f"touch {self.marker}",)


def load(data: bytes):
    return load_plain_pickle(io.BytesIO(data))


@pytest.mark.parametrize("protocol", [0, 2, pickle.HIGHEST_PROTOCOL])
def test_plain_pickle_reads_plain_data_every_protocol(protocol):
    value = {"a": 1, "<s>": 0, "b": [1.5, None, True, (2, "x")], "c": {"d": -3}}
    assert load(pickle.dumps(value, protocol=protocol)) == value


def test_plain_pickle_reads_python2_vocab():
    # pickle.dumps({'a': 0, 'b\xc3\xa4': 1}) in Python 2, protocol 2: str keys are byte strings there
    py2 = b"\x80\x02}q\x00(U\x01aq\x01K\x00U\x03b\xc3\xa4q\x02K\x01u."
    assert load(py2) == {"a": 0, "b\u00e4": 1}


def test_plain_pickle_refuses_code_and_runs_nothing(tmp_path):
    marker = tmp_path / "ran"
    with pytest.raises(pickle.UnpicklingError, match=r"refers to (os|posix)\.system.*only plain data"):
        load(pickle.dumps({"a": _RunsShell(str(marker))}))
    assert not marker.exists()


@pytest.mark.parametrize("value, name", [({1, 2}, "__builtin__.set"), (collections.OrderedDict(a=1), "collections.OrderedDict"),
                                         (pickle.Pickler, "pickle.Pickler")])
def test_plain_pickle_refuses_any_global(value, name):
    with pytest.raises(pickle.UnpicklingError, match=rf"refers to {name}"):
        load(pickle.dumps(value, protocol=2))


def test_plain_pickle_empty_truncated_and_garbage_are_unpickling_errors():
    data = pickle.dumps({"token": 1, "other": 2})
    with pytest.raises(pickle.UnpicklingError, match="empty"):
        load(b"")
    with pytest.raises(pickle.UnpicklingError, match="truncated"):
        load(data[: len(data) // 2])
    with pytest.raises(pickle.UnpicklingError, match="truncated|not a valid pickle"):
        load(data[:-1])
    with pytest.raises(pickle.UnpicklingError):
        load(b"this is a text file\n")
