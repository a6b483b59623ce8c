"""``LayerOpts``: typed, frozen layer options, checked against a config dict before any TF op exists."""

from __future__ import annotations

import dataclasses
import functools
import types
import typing
from typing import Any, Mapping

from returnn.errors import LayerConfigError
from returnn.util.suggest import did_you_mean  # noqa: F401 (re-exported for the layers)

_LAYER_REF = "layer_ref"


def layer_ref(default: Any = None) -> Any:
    """A dataclass field whose string value names another layer (resolved and built before this one)."""
    return dataclasses.field(default=default, metadata={_LAYER_REF: True})


def _type_ok(value: Any, hint: Any) -> bool:
    """A shallow isinstance check against an annotation (unions, containers by their outer type)."""
    origin = typing.get_origin(hint)
    if hint is Any or isinstance(hint, typing.TypeVar):
        return True
    if origin in (typing.Union, types.UnionType):
        return any(_type_ok(value, arg) for arg in typing.get_args(hint))
    if hint is type(None):
        return value is None
    if origin is typing.Literal:
        return value in typing.get_args(hint)
    if hint is float:
        return isinstance(value, (int, float)) and not isinstance(value, bool)
    if hint is int:
        return isinstance(value, int) and not isinstance(value, bool)
    check = origin or hint
    if check in (list, tuple, typing.Sequence, typing.Iterable) or getattr(check, "__name__", "") == "Sequence":
        return isinstance(value, (list, tuple))
    if check in (dict, typing.Mapping) or getattr(check, "__name__", "") == "Mapping":
        return isinstance(value, Mapping)
    if isinstance(check, type):
        return isinstance(value, check)
    return True


def _describe_hint(hint: Any) -> str:
    """``int | None`` style text of an annotation."""
    args = typing.get_args(hint)
    if typing.get_origin(hint) in (typing.Union, types.UnionType):
        return " | ".join(_describe_hint(arg) for arg in args)
    if hint is type(None):
        return "None"
    return getattr(hint, "__name__", str(hint))


@functools.cache
def _type_hints(cls: type) -> dict[str, Any]:
    """The resolved annotations of an options class (resolved once: building a layer asks for them each time)."""
    return typing.get_type_hints(cls)


class LayerOpts:
    """Base of every layer's ``Opts``; subclasses become frozen dataclasses automatically."""

    def __init_subclass__(cls, **kwargs: Any):
        super().__init_subclass__(**kwargs)
        dataclasses.dataclass(frozen=True)(cls)

    @classmethod
    def field_names(cls) -> tuple[str, ...]:
        """The option names this class declares."""
        return tuple(field.name for field in dataclasses.fields(cls)) if dataclasses.is_dataclass(cls) else ()

    @classmethod
    def ref_fields(cls) -> tuple[str, ...]:
        """Options whose string values name other layers."""
        if not dataclasses.is_dataclass(cls):
            return ()
        return tuple(field.name for field in dataclasses.fields(cls) if field.metadata.get(_LAYER_REF))

    @classmethod
    def from_dict(cls, values: Mapping[str, Any], *, where: str) -> LayerOpts:
        """Options from a config dict: missing required, wrongly typed values are errors prefixed by ``where``."""
        if not dataclasses.is_dataclass(cls):
            if values:
                raise LayerConfigError(f"{where}: takes no options, got {sorted(values)}")
            return cls()
        unknown = [key for key in values if key not in cls.field_names()]
        if unknown:
            raise LayerConfigError(f"{where}: unknown option {unknown[0]!r}{did_you_mean(unknown[0], cls.field_names())}")
        hints = _type_hints(cls)
        missing = [field.name for field in dataclasses.fields(cls)
                   if field.name not in values and field.default is dataclasses.MISSING
                   and field.default_factory is dataclasses.MISSING]
        if missing:
            raise LayerConfigError(f'{where}: missing required option "{missing[0]}"')
        for key, value in values.items():
            hint = hints.get(key, Any)
            if not _type_ok(value, hint):
                raise LayerConfigError(f'{where}: "{key}": expected {_describe_hint(hint)}, got {value!r}')
        return cls(**values)

