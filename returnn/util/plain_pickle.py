"""Load pickles that hold only plain data, without running any code a crafted pickle asks for.

``pickle.load`` calls whatever function a pickle names (``os.system``, ...). Here every global is
refused, so only what the pickle opcodes build themselves can come back: dicts, lists, tuples,
strings, bytes, ints, floats, bools and None (and sets, in protocol 4+). That covers RETURNN's
vocabulary pickles ({token: id}), including Python 2 ones (their byte strings decode as UTF-8).
"""

from __future__ import annotations

import io
import pickle
from typing import IO, Any


class PlainDataUnpickler(pickle.Unpickler):
    """An unpickler that refuses every global (class or function), so nothing is called."""

    def find_class(self, module: str, name: str) -> Any:
        raise pickle.UnpicklingError(
            f"it refers to {module}.{name}, but only plain data (dict, list, tuple, str, bytes, numbers, bools, None) "
            "is read from pickles; no classes or functions")

    def persistent_load(self, pid: Any) -> Any:
        raise pickle.UnpicklingError(f"it refers to a persistent object {pid!r}; only plain data is read from pickles")


def load_plain_pickle(f: IO[bytes]) -> Any:
    """The plain data in a binary file; pickle.UnpicklingError with a readable reason for anything else."""
    data = f.read()
    if not data:
        raise pickle.UnpicklingError("the file is empty")
    try:
        return PlainDataUnpickler(io.BytesIO(data), encoding="utf-8").load()
    except pickle.UnpicklingError:
        raise
    except EOFError:
        raise pickle.UnpicklingError("the pickle ends early (the file is truncated)") from None
    except Exception as exc:  # noqa: BLE001 (corrupt opcodes raise many types; nothing ran, so name it and stop)
        raise pickle.UnpicklingError(f"it is not a valid pickle ({type(exc).__name__}: {exc})") from None
