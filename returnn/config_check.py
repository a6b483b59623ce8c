"""Start-up checks of config values and output paths, so that a bad value fails before any real work.

``check_config`` runs before a task (``returnn.tasks.run_task``). It is the one place that checks the
scalar keys below and that the paths a task will write can be written; keys with a structure of their
own are checked where they are parsed (``cleanup_old_models`` in ``returnn.tf.model_cleanup``,
``extern_data`` in ``returnn.tensor.extern_data``, ``log`` in ``returnn.log``).
"""

from __future__ import annotations

import numbers
from typing import Any, Callable

from returnn.config import Config
from returnn.config_parse import infer_value
from returnn.errors import ConfigError
from returnn.util.atomic import check_can_write


def _is_int(value: Any) -> bool:
    """An int, or a whole float (``2000.0``), as ``Config.int`` accepts; not a bool."""
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        return False
    return isinstance(value, numbers.Integral) or float(value).is_integer()


def _int_at_least_1(value: Any) -> bool:
    return _is_int(value) and value >= 1


def _number_at_least_0(value: Any) -> bool:
    return isinstance(value, numbers.Real) and not isinstance(value, bool) and value >= 0


def _batch_size(value: Any) -> bool:
    """Frames per batch: an int >= 1, or a dict of such ints by data key."""
    if isinstance(value, dict):
        return all(_int_at_least_1(v) for v in value.values())
    return _int_at_least_1(value)


def _learning_rates(value: Any) -> bool:
    """A list of rates per epoch, or a dict ``{epoch: rate}``; each a number >= 0."""
    if isinstance(value, dict):
        return all(_is_int(k) and k >= 1 and _number_at_least_0(v) for k, v in value.items())
    if isinstance(value, (list, tuple)):
        return all(_number_at_least_0(v) for v in value)
    return isinstance(value, str)  # "0.1,0.05": Config.float_list parses and checks it


# key -> (accepts the parsed value, what is expected); None (unset) is always accepted
VALUE_RULES: dict[str, tuple[Callable[[Any], bool], str]] = {
    "batch_size": (_batch_size, "an int >= 1 (frames per batch) or a dict of such ints by data key"),
    "forward_batch_size": (_batch_size, "an int >= 1 (frames per batch) or a dict of such ints by data key"),
    "search_batch_size": (_batch_size, "an int >= 1 (frames per batch) or a dict of such ints by data key"),
    "num_epochs": (_int_at_least_1, "an int >= 1"),
    "save_interval": (_int_at_least_1, "an int >= 1 (save every N epochs)"),
    "learning_rate": (_number_at_least_0, "a number >= 0"),
    "min_learning_rate": (_number_at_least_0, "a number >= 0"),
    "learning_rates": (_learning_rates, "a list of numbers >= 0 (one per epoch) or a dict {epoch: rate}"),
}

# task -> the keys of the files it writes; "model" is a path prefix (its folder must be writable)
OUTPUT_PATHS: dict[str, tuple[str, ...]] = {
    "train": ("model", "learning_rate_file"),
    "forward": ("output_file",),
    "search": ("search_output_file",),
}


def check_config(config: Config, task: str) -> None:
    """All start-up checks for running ``task``: values first, then the paths it will write."""
    check_values(config)
    check_output_paths(config, task)


def check_values(config: Config) -> None:
    """Each key of ``VALUE_RULES`` that is set must satisfy its rule; the error names key, value, expectation."""
    for key, (accepts, expected) in VALUE_RULES.items():
        value = _parsed(config.typed_value(key))
        if value is not None and not accepts(value):
            raise ConfigError(f'config key "{key}": expected {expected}, got {value!r} (from {config.origin(key)})')


def check_output_paths(config: Config, task: str) -> None:
    """The files ``task`` writes can be created (missing folders are made), so the first save cannot fail."""
    for key in OUTPUT_PATHS.get(task, ()):
        path = config.value(key)
        if not path:
            continue
        target = f"{path}.001" if key == "model" else path  # model is a prefix: its checkpoints are model.NNN
        try:
            check_can_write(target)
        except OSError as exc:
            what = "the folder of the checkpoints" if key == "model" else "the file"
            raise ConfigError(f'config key "{key}": cannot write {what} at {path!r} ({exc.strerror if exc.filename else exc}; '
                              f"from {config.origin(key)}); expected a path in a writable folder") from None


def _parsed(value: Any) -> Any:
    """A numeric string (from a line-based config) as its number; anything else as it is."""
    if isinstance(value, str):
        return infer_value(value)
    return value
