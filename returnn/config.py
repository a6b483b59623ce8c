"""The ``Config``: typed access to the values of config files and ``++key value`` overrides.

Scripting API as in RETURNN::

    from returnn.config import Config
    config = Config()
    config.load_file("setup.config")
    config.parse_cmd_args(["++num_epochs", "2"])
    config.int("num_epochs", 10)

Later files override earlier ones; ``++`` overrides win over every file, also inside a Python config
that computes other values from the overridden key (the files are evaluated again with it pinned).
"""

from __future__ import annotations

from typing import Any, Iterable, Sequence

from returnn.config_parse import detect_format, exec_python, infer_value, parse_json, parse_lines, parse_yaml, read_config_file
from returnn.errors import ConfigError, ConfigTypeError

_MISSING = object()
_CMD_LINE = "the command line"


class Config:
    """Config values by key, each remembering where it came from (file or command line)."""

    def __init__(self, items: dict | None = None):
        self.files: list[str] = []
        self._file_values: dict[str, Any] = {}
        self._set_values: dict[str, Any] = {}
        self._overrides: dict[str, Any] = {}
        self._origins: dict[str, str] = {}
        self.typed_dict: dict[str, Any] = {}
        self.read_keys: set[str] = set()  # every key a getter was asked for (see returnn.config_keys)
        if items:
            self.update(items)

    # ---- loading ---------------------------------------------------------------------------

    def load_file(self, path: str) -> None:
        """Load one config file in any supported format; its values override earlier files'."""
        self.files.append(str(path))
        self._load(str(path))
        self._apply_overrides()

    def parse_cmd_args(self, args: Sequence[str]) -> list[str]:
        """Apply ``++key value`` pairs; other arguments are config files, loaded in order.

        Returns the config files found among ``args``. ``--key value`` is rejected with a pointer to ``++``.
        """
        args = list(args)
        files, overrides = split_cmd_args(args)
        self._overrides.update(overrides)
        for key in overrides:
            self._origins[key] = f"++{key} on {_CMD_LINE}"
        self.files.extend(files)
        if overrides and any(detect_format(p, "") == "python" or _is_python_file(p) for p in self.files):
            self._reload_all()
        else:
            for path in files:
                self._load(path)
        self._apply_overrides()
        return files

    def update(self, items: dict, *, origin: str = "Config.update") -> None:
        """Set several values from a dict (values from Python, kept as they are)."""
        for key, value in items.items():
            self.set(key, value, origin=origin)

    def set(self, key: str, value: Any, *, origin: str = "Config.set") -> None:
        """Set one value now; it wins over files loaded before and, as the latest word, over ``++``."""
        if key in self._overrides:
            self._overrides[key] = value
        self._set_values[key] = value
        self._file_values[key] = value
        self.typed_dict[key] = value
        self._origins[key] = origin

    def _load(self, path: str) -> None:
        content = read_config_file(path)
        fmt = detect_format(path, content)
        if fmt == "python":
            namespace = dict(self._file_values)
            namespace["config"] = self
            values = exec_python(path, content, namespace, self._overrides)
        elif fmt == "json":
            values = parse_json(path, content)
        elif fmt == "yaml":
            values = parse_yaml(path, content)
        else:
            values = parse_lines(path, content)
        for key, value in values.items():
            if key in self._overrides:
                continue
            if key not in self._file_values or self._file_values[key] is not value:
                self._origins[key] = f"config file {path!r}"
            self._file_values[key] = value
            self.typed_dict[key] = value

    def _reload_all(self) -> None:
        """Evaluate all files again, so Python configs compute from the pinned overrides."""
        self._file_values = dict(self._set_values)
        self.typed_dict = dict(self._set_values)
        self._apply_overrides()
        for path in self.files:
            self._load(path)

    def _apply_overrides(self) -> None:
        self.typed_dict.update(self._overrides)

    # ---- typed access ----------------------------------------------------------------------

    def _lookup(self, key: str) -> Any:
        """The raw value or ``_MISSING``; remembers that the framework reads ``key``."""
        self.read_keys.add(key)
        return self.typed_dict.get(key, _MISSING)

    def has(self, key: str) -> bool:
        """Whether the key is set (by any file, override or ``set``)."""
        return self._lookup(key) is not _MISSING

    def __contains__(self, key: str) -> bool:
        return self.has(key)

    def keys(self) -> list[str]:
        """All keys that are set."""
        return list(self.typed_dict)

    def origin(self, key: str) -> str:
        """Where a key's value came from, for error messages."""
        return self._origins.get(key, "the config")

    def typed_value(self, key: str, default: Any = None) -> Any:
        """The raw Python object of a key (a dict, a function, a class, ...)."""
        value = self._lookup(key)
        return default if value is _MISSING else value

    def value(self, key: str, default: str | None = None) -> str | None:
        """The value as a string (lists joined by ','), as RETURNN's ``Config.value``."""
        value = self._lookup(key)
        if value is _MISSING or value is None:
            return default
        if isinstance(value, (list, tuple)):
            return ",".join(str(v) for v in value)
        return str(value)

    def int(self, key: str, default: int | None = None) -> int | None:
        """The value as an int; a whole float or numeric string is accepted, else a ConfigTypeError."""
        value = self._lookup(key)
        if value is _MISSING or value is None:
            return default
        if isinstance(value, bool):
            return int(value)
        if isinstance(value, int):
            return value
        if isinstance(value, float) and value.is_integer():
            return int(value)
        if isinstance(value, str):
            parsed = infer_value(value)
            if isinstance(parsed, int) and not isinstance(parsed, bool):
                return parsed
        raise self._type_error(key, "an int", value)

    def float(self, key: str, default: float | None = None) -> float | None:
        """The value as a float (ints and numeric strings accepted)."""
        value = self._lookup(key)
        if value is _MISSING or value is None:
            return default
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return float(value)
        if isinstance(value, str):
            parsed = infer_value(value)
            if isinstance(parsed, (int, float)) and not isinstance(parsed, bool):
                return float(parsed)
        raise self._type_error(key, "a float", value)

    def bool(self, key: str, default: bool | None = None) -> bool | None:
        """The value as a bool: True/False, true/false, 1/0, yes/no, on/off."""
        value = self._lookup(key)
        if value is _MISSING or value is None:
            return default
        if isinstance(value, bool):
            return value
        if isinstance(value, int) and value in (0, 1):
            return bool(value)
        if isinstance(value, str):
            word = value.strip().lower()
            if word in ("true", "1", "yes", "on"):
                return True
            if word in ("false", "0", "no", "off"):
                return False
        raise self._type_error(key, "a bool (True/False, true/false, 1/0)", value)

    def is_true(self, key: str, default: bool = False) -> bool:
        """RETURNN's spelling of ``bool(key, default)``."""
        return bool(self.bool(key, default))

    def list(self, key: str, default: list | None = None) -> list:
        """The value as a list: a list/tuple as is, a string split at ',', a scalar wrapped."""
        value = self._lookup(key)
        if value is _MISSING or value is None:
            return [] if default is None else list(default)
        if isinstance(value, (list, tuple)):
            return list(value)
        if isinstance(value, str):
            return [part.strip() for part in value.split(",") if part.strip()]
        return [value]

    def int_list(self, key: str, default: list | None = None) -> list[int]:
        """The value as a list of ints."""
        items = self.list(key, default)
        try:
            return [int(infer_value(v)) if isinstance(v, str) else int(v) for v in items]
        except (TypeError, ValueError):
            raise self._type_error(key, "a list of ints", self.typed_dict.get(key)) from None

    def float_list(self, key: str, default: list | None = None) -> list[float]:
        """The value as a list of floats."""
        items = self.list(key, default)
        try:
            return [float(infer_value(v)) if isinstance(v, str) else float(v) for v in items]
        except (TypeError, ValueError):
            raise self._type_error(key, "a list of floats", self.typed_dict.get(key)) from None

    def _type_error(self, key: str, expected: str, value: Any) -> ConfigTypeError:
        return ConfigTypeError(f'config key "{key}": expected {expected}, got {value!r} (from {self.origin(key)})')


def split_cmd_args(args: Iterable[str]) -> tuple[list[str], dict[str, Any]]:
    """Split command-line arguments into config files and ``++key value`` overrides."""
    args = list(args)
    files: list[str] = []
    overrides: dict[str, Any] = {}
    i = 0
    while i < len(args):
        arg = args[i]
        if arg.startswith("++"):
            key = arg[2:]
            if not key:
                raise ConfigError("'++' must be followed by a config key, as in '++num_epochs 2'")
            if i + 1 >= len(args):
                raise ConfigError(f"'{arg}' on the command line needs a value, as in '{arg} VALUE'")
            overrides[key] = infer_value(args[i + 1])
            i += 2
        elif arg.startswith("-") and len(arg) > 1:
            key = arg.lstrip("-").split("=", 1)[0]
            raise ConfigError(f"unknown option '{arg}': config keys are overridden as '++{key} VALUE', not '{arg} VALUE'")
        else:
            files.append(arg)
            i += 1
    return files, overrides


def _is_python_file(path: str) -> bool:
    try:
        with open(path, encoding="utf-8") as f:
            return f.read(2) == "#!"
    except (OSError, UnicodeDecodeError):
        return False


_global_config: Config | None = None


def set_global_config(config: Config | None) -> None:
    """Make ``config`` the one ``get_global_config`` returns (``rnn.py`` sets the config it runs)."""
    global _global_config
    _global_config = config


def get_global_config(*, raise_exception: bool = True, auto_create: bool = False,
                      return_empty_if_none: bool = False) -> Config | None:
    """The config being run, as RETURNN's ``get_global_config``.

    None set: ``auto_create`` makes a new empty one and sets it, ``return_empty_if_none`` returns a new empty
    one without setting it; else a ConfigError when ``raise_exception``, or None.
    """
    if _global_config is not None:
        return _global_config
    if auto_create:
        set_global_config(Config())
        return _global_config
    if return_empty_if_none:
        return Config()
    if raise_exception:
        raise ConfigError("get_global_config(): no config is being run (rnn.py sets it; a script can call "
                          "get_global_config(auto_create=True) or set_global_config(config))")
    return None
