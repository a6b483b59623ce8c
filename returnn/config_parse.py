"""Parsing of config files in every format RETURNN users have, and of ``++key value`` strings.

Formats, chosen per file:
- Python: first line starts with ``#!`` or the name ends in ``.py``; executed, every top-level name
  (except modules and ``_private`` names) becomes a config value.
- JSON: first non-space character is ``{``.
- YAML: name ends in ``.yaml`` / ``.yml``.
- Line-based: ``key value`` per line, ``#`` comments.
"""

from __future__ import annotations

import ast
import json
import os
import types
from typing import Any, Mapping

import yaml

from returnn.errors import ConfigError

_BOOL_WORDS = {"true": True, "false": False}


def infer_value(text: str) -> Any:
    """Turn a command-line or line-based value into int, float, bool, None, list, dict or str."""
    stripped = text.strip()
    lowered = stripped.lower()
    if lowered in _BOOL_WORDS:
        return _BOOL_WORDS[lowered]
    if lowered == "none" or lowered == "null":
        return None
    try:
        return ast.literal_eval(stripped)
    except (ValueError, SyntaxError, MemoryError, RecursionError):
        pass
    if stripped[:1] in "[{":
        try:
            return json.loads(stripped)
        except json.JSONDecodeError as exc:
            raise ConfigError(f"value {stripped!r} looks like a list or dict but does not parse: {exc}") from None
    return text


def detect_format(path: str, content: str) -> str:
    """Return "python", "json", "yaml" or "lines" for a config file."""
    lower = path.lower()
    if lower.endswith((".yaml", ".yml")):
        return "yaml"
    if content.startswith("#!") or lower.endswith(".py"):
        return "python"
    if content.lstrip().startswith("{"):
        return "json"
    return "lines"


def read_config_file(path: str) -> str:
    """Read a config file, with a ConfigError naming it when it is missing or unreadable."""
    if not os.path.exists(path):
        raise ConfigError(f"config file {path!r} does not exist (current directory: {os.getcwd()})")
    if os.path.isdir(path):
        raise ConfigError(f"config file {path!r} is a directory, expected a file")
    try:
        with open(path, encoding="utf-8") as f:
            return f.read()
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"config file {path!r} cannot be read: {exc}") from None


def parse_json(path: str, content: str) -> dict:
    """Parse a JSON config whose top level is an object."""
    try:
        values = json.loads(content)
    except json.JSONDecodeError as exc:
        raise ConfigError(f"config file {path!r}, line {exc.lineno}: invalid JSON: {exc.msg}") from None
    return _require_mapping(path, values, "JSON")


def parse_yaml(path: str, content: str) -> dict:
    """Parse a YAML config whose top level is a mapping (an empty file is an empty config)."""
    try:
        values = yaml.safe_load(content)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f", line {mark.line + 1}" if mark is not None else ""
        raise ConfigError(f"config file {path!r}{where}: invalid YAML: {getattr(exc, 'problem', exc)}") from None
    return _require_mapping(path, {} if values is None else values, "YAML")


def parse_lines(path: str, content: str) -> dict:
    """Parse a line-based config: ``key value`` per line, ``#`` starts a comment line."""
    values = {}
    for line_no, raw in enumerate(content.splitlines(), start=1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        key, _, rest = line.partition(" ")
        rest = rest.strip()
        if not rest and "\t" in key:
            key, _, rest = key.partition("\t")
        if not key.isidentifier() and not key.replace("-", "_").isidentifier():
            raise ConfigError(f"config file {path!r}, line {line_no}: expected 'key value', got {raw!r}")
        try:
            values[key] = infer_value(rest.strip()) if rest.strip() else True
        except ConfigError as exc:
            raise ConfigError(f"config file {path!r}, line {line_no}: key {key!r}: {exc}") from None
    return values


def exec_python(path: str, content: str, namespace: dict, pinned: Mapping[str, Any]) -> dict:
    """Execute a Python config in ``namespace``; assignments to ``pinned`` keys keep the pinned value.

    Pinning is how a ``++key value`` override wins over the file's own assignment, so that values the
    config computes from that key (``learning_rates = [lr] * num_epochs``) see the override too.
    """
    try:
        code = compile(content, path, "exec")
    except SyntaxError as exc:
        raise ConfigError(
            f"config file {path!r}, line {exc.lineno}: syntax error: {exc.msg}"
            + (f"\n    {exc.text.rstrip()}" if exc.text else "")
        ) from None
    namespace.update(pinned)
    namespace.setdefault("__file__", os.path.abspath(path))
    namespace.setdefault("__name__", "__returnn_config__")
    try:
        exec(code, namespace, _PinnedNamespace(namespace, pinned))
    except Exception as exc:
        raise ConfigError(f"config file {path!r}, line {_error_line(exc, path)}: {type(exc).__name__}: {exc}") from exc
    return {key: value for key, value in namespace.items() if _is_config_value(key, value)}


class _PinnedNamespace(dict):
    """Module-level locals of a Python config that write through to its globals, ignoring pinned keys."""

    def __init__(self, globals_: dict, pinned: Mapping[str, Any]):
        super().__init__()
        self._globals = globals_
        self._pinned = pinned

    def __getitem__(self, key):
        return self._globals[key]

    def __setitem__(self, key, value):
        if key not in self._pinned:
            self._globals[key] = value

    def __delitem__(self, key):
        if key not in self._pinned:
            del self._globals[key]

    def __contains__(self, key):
        return key in self._globals


def _error_line(exc: BaseException, path: str) -> str:
    """The line in ``path`` where ``exc`` was raised, from its traceback, or '?'."""
    line = "?"
    tb = exc.__traceback__
    while tb is not None:
        if tb.tb_frame.f_code.co_filename == path:
            line = str(tb.tb_lineno)
        tb = tb.tb_next
    return line


def _is_config_value(key: str, value: Any) -> bool:
    return not key.startswith("_") and not isinstance(value, types.ModuleType) and key != "config"


def _require_mapping(path: str, values: Any, kind: str) -> dict:
    if not isinstance(values, dict):
        raise ConfigError(f"config file {path!r}: {kind} top level must be a mapping of keys, got {type(values).__name__}")
    return values
