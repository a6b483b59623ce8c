"""The learning-rate state file (``learning_rate_file``): RETURNN's format, read as data, never run.

The file is a Python dict literal, as RETURNN writes it::

    {
    1: EpochData(learningRate=0.001, error={
    ':meta:device': 'cpu',
    'dev_score': 1.25,
    'train_score': inf,
    }),
    }

It is parsed with :mod:`ast` and only this shape is accepted: epoch keys (ints), ``EpochData(...)`` with
the keywords ``learningRate`` (a number or None) and ``error`` (a number in old files, else a dict
str -> number, string or dict str -> number; ``':meta:...'`` entries may hold any plain data:
numbers, strings, None, bools, lists, tuples, dicts). Numbers may be negative, ``inf`` or ``nan``, or
numpy scalars as numpy 2 prints them (``np.float64(0.5)``). Anything else (other calls, names,
attribute access, operators, lambdas, comprehensions, f-strings, ...) is a ConfigError naming the
file and line: a crafted file cannot run code at the next restart.
"""

from __future__ import annotations

import ast
import math
from typing import Any, Callable

import numpy

from returnn.errors import ConfigError

_CONSTANT_NAMES = {"inf": math.inf, "nan": math.nan}
_NUMPY_MODULES = ("np", "numpy")
_NUMPY_SCALARS: dict[str, Callable[[Any], Any]] = {
    "float64": float, "float32": float, "float16": float, "int64": int, "int32": int, "int16": int, "int8": int,
}
_FOUND = {
    ast.Call: "a call", ast.Attribute: "attribute access", ast.Name: "the name", ast.Lambda: "a lambda",
    ast.ListComp: "a comprehension", ast.SetComp: "a comprehension", ast.DictComp: "a comprehension",
    ast.GeneratorExp: "a generator expression", ast.JoinedStr: "an f-string", ast.BinOp: "an operator expression",
    ast.BoolOp: "an operator expression", ast.Compare: "a comparison", ast.Subscript: "a subscript",
    ast.Starred: "a starred expression", ast.IfExp: "a conditional expression", ast.Set: "a set",
}
_EPOCH_DATA = "EpochData(learningRate=..., error={...})"


class EpochData:
    """Learning rate and scores of one epoch; the repr is the file format (keep it stable)."""

    def __init__(self, learningRate: float | None, error: dict | float | None = None):  # noqa: N803 (file format)
        self.learning_rate = learningRate
        if isinstance(error, float):
            error = {"old_format_score": error}
        self.error: dict[str, Any] = dict(error or {})

    def __repr__(self) -> str:
        return f"EpochData(learningRate={_value_repr(self.learning_rate)}, error={_dict_repr(self.error)})"


def format_epoch_data(epoch_data: dict[int, EpochData]) -> str:
    """The state file's text: RETURNN's dict literal, epochs sorted, one score a line."""
    return "{\n" + "".join(f"{epoch}: {epoch_data[epoch]!r},\n" for epoch in sorted(epoch_data)) + "}\n"


def read_learning_rate_file(filename: str) -> dict[int, EpochData]:
    """Parse a state file written by us or by RETURNN; a ConfigError naming file and line for anything else."""
    where = f'config key "learning_rate_file": {filename!r}'
    try:
        with open(filename, encoding="utf-8") as f:
            text = f.read()
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{where}: cannot read the learning-rate file: {exc}") from None
    try:
        tree = ast.parse(text, filename, mode="eval")
    except SyntaxError as exc:
        raise ConfigError(f"{where}, line {exc.lineno}: not a learning-rate file ({exc.msg}); "
                          f"expected {{epoch: {_EPOCH_DATA}, ...}}") from None
    except (ValueError, RecursionError, MemoryError) as exc:
        raise ConfigError(f"{where}: not a learning-rate file ({type(exc).__name__}: {exc})") from None
    try:
        return _FileReader(where).epochs(tree.body)
    except RecursionError:
        raise ConfigError(f"{where}: not a learning-rate file (values nested too deeply)") from None


class _FileReader:
    """Turns the parsed expression into epoch data, admitting only the nodes the format has."""

    def __init__(self, where: str):
        self.where = where

    def refuse(self, node: ast.AST, expected: str) -> ConfigError:
        """The error for ``node``: file, line, what was found, what was expected; the file is never run."""
        snippet = ast.unparse(node)
        snippet = snippet if len(snippet) <= 60 else snippet[:57] + "..."
        found = _FOUND.get(type(node), "an expression")
        if isinstance(node, ast.Constant):
            found = f"a {type(node.value).__name__}"
        return ConfigError(f"{self.where}, line {getattr(node, 'lineno', '?')}: found {found} {snippet!r} where "
                           f"{expected} was expected; the learning-rate file is read as data and may hold only "
                           f"{{epoch: {_EPOCH_DATA}}} with numbers, strings, None, bools, inf, nan, lists, tuples "
                           f"and dicts")

    def epochs(self, node: ast.expr) -> dict[int, EpochData]:
        """The top level: ``{epoch: EpochData(...), ...}``."""
        if not isinstance(node, ast.Dict):
            raise self.refuse(node, "a dict {epoch: EpochData(...)}")
        result = {}
        for key, value in zip(node.keys, node.values):
            epoch = self.key(key, value, expected="an epoch number")
            if isinstance(epoch, str) and not epoch.strip().isdigit():
                raise self.refuse(key, "an epoch number")
            result[int(epoch)] = self.epoch_data(value)
        return result

    def epoch_data(self, node: ast.expr) -> EpochData:
        """``EpochData(learningRate=number, error=...)``, keywords only."""
        if not (isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id == "EpochData"):
            raise self.refuse(node, _EPOCH_DATA)
        if node.args:
            raise self.refuse(node.args[0], "only the keywords learningRate= and error= of EpochData")
        kwargs: dict[str, Any] = {}
        for keyword in node.keywords:
            if keyword.arg not in ("learningRate", "error") or keyword.arg in kwargs:
                raise self.refuse(keyword.value, "only the keywords learningRate= and error= of EpochData, each once")
            if keyword.arg == "learningRate":
                kwargs["learningRate"] = None if _is_none(keyword.value) else self.number(keyword.value, "a learning rate")
            else:
                kwargs["error"] = self.error(keyword.value)
        return EpochData(kwargs.get("learningRate"), kwargs.get("error"))

    def error(self, node: ast.expr) -> dict[str, Any] | float | None:
        """The scores: None, one number (old format), or a dict str -> score (``':meta:'`` keys: any data)."""
        if _is_none(node):
            return None
        if not isinstance(node, ast.Dict):
            return float(self.number(node, "the error dict {score name: value} (or one number)"))
        scores = {}
        for key, value in zip(node.keys, node.values):
            name = self.key(key, value, expected="a score name (a string)", types=(str,))
            if name.startswith(":meta:"):
                scores[name] = self.data(value)
            elif isinstance(value, ast.Dict):
                scores[name] = self.string_dict(value, lambda v: self.number(v, "a score (a number)"))
            elif isinstance(value, ast.Constant) and isinstance(value.value, str):
                scores[name] = value.value
            else:
                scores[name] = self.number(value, f"a score (a number) for {name!r}")
        return scores

    def number(self, node: ast.expr, expected: str) -> int | float:
        """An int or float literal, ``-x``, ``inf``, ``nan``, or ``np.float64(x)``-like numpy scalars."""
        if isinstance(node, ast.Constant) and type(node.value) in (int, float):
            return node.value
        if isinstance(node, ast.UnaryOp) and isinstance(node.op, (ast.USub, ast.UAdd)):
            value = self.number(node.operand, expected)
            return -value if isinstance(node.op, ast.USub) else value
        if isinstance(node, ast.Name) and node.id in _CONSTANT_NAMES:
            return _CONSTANT_NAMES[node.id]
        if (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and node.func.attr in _NUMPY_SCALARS
                and isinstance(node.func.value, ast.Name) and node.func.value.id in _NUMPY_MODULES
                and len(node.args) == 1 and not node.keywords):
            return _NUMPY_SCALARS[node.func.attr](self.number(node.args[0], expected))
        raise self.refuse(node, expected)

    def data(self, node: ast.expr) -> Any:
        """Plain data of ``':meta:'`` entries: numbers, strings, None, bools, lists, tuples, dicts."""
        if isinstance(node, ast.Constant) and (node.value is None or type(node.value) in (str, bool)):
            return node.value
        if isinstance(node, (ast.List, ast.Tuple)):
            items = [self.data(item) for item in node.elts]
            return items if isinstance(node, ast.List) else tuple(items)
        if isinstance(node, ast.Dict):
            return {self.key(k, v): self.data(v) for k, v in zip(node.keys, node.values)}
        return self.number(node, "plain data (a number, string, None, bool, list, tuple or dict)")

    def string_dict(self, node: ast.Dict, value: Callable[[ast.expr], Any]) -> dict[str, Any]:
        """A dict with string keys and values read by ``value``."""
        return {self.key(k, v, expected="a string key", types=(str,)): value(v) for k, v in zip(node.keys, node.values)}

    def key(self, node: ast.expr | None, value: ast.expr | None = None, *, expected: str = "a dict key (an int or string)",
            types: tuple[type, ...] = (int, str)) -> Any:
        """A dict key: an int or string literal (``None`` is ``**`` unpacking, refused)."""
        if node is None:
            raise self.refuse(value, f"{expected}, not ** unpacking")
        if isinstance(node, ast.Constant) and type(node.value) in types:
            return node.value
        raise self.refuse(node, expected)


def _is_none(node: ast.expr) -> bool:
    return isinstance(node, ast.Constant) and node.value is None


def _value_repr(value: Any) -> str:
    if isinstance(value, (float, numpy.floating)):
        return repr(float(value))
    return repr(value)


def _dict_repr(values: dict) -> str:
    return "{\n" + "".join(f"{k!r}: {_value_repr(values[k])},\n" for k in sorted(values)) + "}"
