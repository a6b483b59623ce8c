"""``cleanup_old_models``: which epoch checkpoints to delete, keeping the best and the newest."""

from __future__ import annotations

import numbers
from typing import Mapping

from returnn.errors import ConfigError

_DEFAULTS = {"keep_last_n": 2, "keep_best_n": 4, "keep": ()}


def cleanup_options(value) -> dict | None:
    """Parse the config value: False/None (off), True (defaults) or a dict of keep_last_n, keep_best_n, keep."""
    if not value:
        return None
    if value is True:
        return dict(_DEFAULTS)
    if not isinstance(value, dict):
        raise ConfigError(f'config key "cleanup_old_models": expected True or a dict like {_DEFAULTS}, got {value!r}')
    unknown = set(value) - set(_DEFAULTS)
    if unknown:
        raise ConfigError(f'config key "cleanup_old_models": unknown option(s) {sorted(unknown)}; known: {sorted(_DEFAULTS)}')
    for name in ("keep_last_n", "keep_best_n"):
        count = value.get(name, 0)
        if not isinstance(count, numbers.Integral) or isinstance(count, bool):
            raise ConfigError(f'config key "cleanup_old_models": "{name}" expected an int (a number of '
                              f"models), got {count!r}")
    keep = value.get("keep", ())
    if not isinstance(keep, (list, tuple, set, range)) or not all(_is_epoch(e) for e in keep):
        raise ConfigError(f'config key "cleanup_old_models": "keep" expected a list of epochs (ints), got {keep!r}')
    return {**_DEFAULTS, **value}


def _is_epoch(value) -> bool:
    """An epoch number as ``keep`` lists it: an int, or a string of digits."""
    if isinstance(value, str):
        return value.strip().isdigit()
    return isinstance(value, numbers.Integral) and not isinstance(value, bool)


def epochs_to_delete(epochs: list[int], scores: Mapping[int, float], options: dict, *, final_epoch: int) -> list[int]:
    """Epochs whose checkpoints may go: not among the last N, the best N by score, ``keep``, or the final epoch."""
    epochs = sorted(epochs)
    keep = set(epochs[-options["keep_last_n"]:]) if options["keep_last_n"] > 0 else set()
    scored = sorted((scores[e], e) for e in epochs if scores.get(e) is not None)
    keep.update(e for _, e in scored[:max(options["keep_best_n"], 0)])
    keep.update(int(e) for e in options["keep"])
    keep.add(final_epoch)
    return [e for e in epochs if e not in keep]
