"""Helpers under the names RETURNN configs and scripts import from ``returnn.util.basic``.

Only what configs use: the user name for model paths, the ``NotSpecified`` default marker, the backend
selection (TensorFlow only here), ``BehaviorVersion``, and a few formatting helpers.
"""

from __future__ import annotations

import io
import os
import random
import sys
from typing import Any

from returnn.config import Config, get_global_config
from returnn.errors import ConfigError
from returnn.tasks import check_backend

unicode = str  # Python 2 names that old configs still import
long = int
BytesIO = io.BytesIO


class OptionalNotImplementedError(NotImplementedError):
    """Something a subclass may implement; callers fall back when it does not."""


class _NotSpecifiedMeta(type):
    def __repr__(cls) -> str:
        return "<NotSpecified>"

    def __str__(cls) -> str:
        return "NotSpecified"


class NotSpecified(metaclass=_NotSpecifiedMeta):
    """The class itself marks an argument that was not given (where None is a meaningful value):
    ``def f(x=NotSpecified)``, then ``x is NotSpecified``."""

    def __init__(self) -> None:
        raise TypeError("NotSpecified is a marker: use the class itself, do not instantiate it")

    @classmethod
    def resolve(cls, value: Any, default: Any) -> Any:
        """``default`` when ``value`` is NotSpecified, else ``value``."""
        return default if value is NotSpecified else value


def get_login_username() -> str:
    """The current user's name from the password database (``os.getlogin()`` fails without a terminal);
    the numeric uid as a string when the uid has no entry (e.g. in a container)."""
    if sys.platform == "win32":
        return os.getlogin()
    import pwd

    try:
        return pwd.getpwuid(os.getuid()).pw_name
    except KeyError:
        return str(os.getuid())


class BackendEngine:
    """RETURNN's backend selection. This framework runs TensorFlow only: selecting another backend is an error."""

    Theano = 0
    TensorFlow = 1
    Torch = 2
    Default = TensorFlow
    selected_engine: int | None = None

    _names = {Theano: "theano", TensorFlow: "tensorflow", Torch: "torch"}

    @classmethod
    def select_engine(cls, engine: int | None = None, *, default_fallback_engine: int | None = None,
                      config: Config | None = None) -> None:
        """Select ``engine`` or the one the config's ``backend`` / ``use_tensorflow`` keys ask for
        (the global config when none is given)."""
        if engine is None:
            config = config if config is not None else get_global_config(return_empty_if_none=True)
            check_backend(config)  # a clear error for a Theano / PyTorch config
            engine = cls.TensorFlow
        if engine != cls.TensorFlow:
            raise ConfigError(f"BackendEngine.select_engine({cls._names.get(engine, engine)!r}): this framework runs "
                              'TensorFlow only; use BackendEngine.TensorFlow (config: backend = "tensorflow")')
        cls.selected_engine = engine

    @classmethod
    def get_selected_engine(cls) -> int:
        """The selected engine; TensorFlow when none was selected yet."""
        return cls.TensorFlow if cls.selected_engine is None else cls.selected_engine

    @classmethod
    def is_theano_selected(cls) -> bool:
        return cls.get_selected_engine() == cls.Theano

    @classmethod
    def is_tensorflow_selected(cls) -> bool:
        return cls.get_selected_engine() == cls.TensorFlow

    @classmethod
    def is_torch_selected(cls) -> bool:
        return cls.get_selected_engine() == cls.Torch


class BehaviorVersion:
    """The config's ``behavior_version`` (0 when unset): RETURNN configs read it to pick newer defaults."""

    @classmethod
    def get(cls) -> int:
        config = get_global_config(raise_exception=False)
        return 0 if config is None else config.int("behavior_version", 0)


def get_fwd_compat_kwargs() -> dict[str, None]:
    """An extra keyword argument with a random name: passing it to a config's custom function checks that the
    function takes ``**kwargs`` (so it keeps working when more arguments are passed later)."""
    return {f"__fwd_compat_random_arg_{random.randint(0, 99)}": None}


def to_bool(value: Any) -> bool:
    """A bool from a bool, an int or a string ("true"/"false", "yes"/"no", "1"/"0"; any case)."""
    if isinstance(value, str):
        text = value.strip().lower()
        if text in ("true", "yes", "1", "on"):
            return True
        if text in ("false", "no", "0", "off", ""):
            return False
        raise ValueError(f"to_bool: cannot read {value!r} as a bool; expected true/false, yes/no or 1/0")
    return bool(value)


def hms(seconds: float) -> str:
    """Seconds as ``h:mm:ss``, e.g. 5025 -> ``"1:23:45"``."""
    minutes, secs = divmod(int(seconds), 60)
    hours, minutes = divmod(minutes, 60)
    return f"{hours}:{minutes:02d}:{secs:02d}"


def human_size(n: float, factor: int = 1000, frac: float = 0.8, prec: int = 1) -> str:
    """``n`` with a K/M/G/T suffix once it exceeds ``frac`` of the unit, e.g. 1500 -> ``"1.5K"``."""
    suffixes = ["", "K", "M", "G", "T"]
    i = 0
    while i < len(suffixes) - 1 and n > factor ** (i + 1) * frac:
        i += 1
    return str(n) if i == 0 else f"{n / factor ** i:.{prec}f}{suffixes[i]}"


def human_bytes_size(n: float, factor: int = 1024, frac: float = 0.8, prec: int = 1) -> str:
    """A byte count for humans, e.g. 2048 -> ``"2.0KB"``."""
    return human_size(n, factor=factor, frac=frac, prec=prec) + "B"


def make_hashable(obj: Any) -> Any:
    """Lists become tuples, dicts sorted item tuples, sets frozensets, recursively (for cache keys)."""
    if isinstance(obj, (list, tuple)):
        return tuple(make_hashable(x) for x in obj)
    if isinstance(obj, dict):
        return tuple(sorted((make_hashable(k), make_hashable(v)) for k, v in obj.items()))
    if isinstance(obj, (set, frozenset)):
        return frozenset(make_hashable(x) for x in obj)
    return obj


def dict_joined(*dicts: dict) -> dict:
    """One dict with the items of all ``dicts``; later ones win."""
    joined: dict = {}
    for d in dicts:
        joined.update(d)
    return joined
