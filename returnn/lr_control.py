"""Learning-rate control per epoch (constant, newbob variants, fixed lists) and its state file.

The state file (``learning_rate_file``) has RETURNN's format (see ``returnn.lr_file``), so that the
plotting scripts and pipelines reading RETURNN's file read ours. It is written atomically after each
epoch, and read back (as data, never run) on restart.
"""

from __future__ import annotations

import math
import os
from typing import Any, Callable

import numpy

from returnn.errors import ConfigError
from returnn.log import DETAIL, logger
from returnn.lr_file import EpochData, format_epoch_data, read_learning_rate_file
from returnn.util.atomic import atomic_write

Update = float | Callable[[float], float]


class LearningRateControl:
    """Per-epoch learning rates; the base decides nothing itself (see ``_calc_for_epoch`` of subclasses)."""

    kind = "constant"

    def __init__(self, *, default_learning_rate: float, min_learning_rate: float = 0.0,
                 default_learning_rates: list | dict | None = None, error_measure_key: str | list | None = None,
                 relative_error_also_relative_to_learning_rate: bool = False,
                 min_num_epochs_per_new_learning_rate: int = 0, relative_error_div_by_old: bool = False,
                 learning_rate_decay: Update = 0.5, learning_rate_growth: Update = 1.0, filename: str | None = None):
        self.default_learning_rate = default_learning_rate
        self.min_learning_rate = min_learning_rate
        self.error_measure_key = error_measure_key
        self.relative_error_also_relative_to_learning_rate = relative_error_also_relative_to_learning_rate
        self.min_num_epochs_per_new_learning_rate = min_num_epochs_per_new_learning_rate
        self.relative_error_div_by_old = relative_error_div_by_old
        self.learning_rate_decay = learning_rate_decay
        self.learning_rate_growth = learning_rate_growth
        self.filename = filename
        self.epoch_data: dict[int, EpochData] = {}
        if filename and os.path.exists(filename):
            logger.log(DETAIL, f"Learning-rate control: loading {filename}")
            self.load()
        for epoch, value in _as_epoch_dict(default_learning_rates).items():
            self.set_default_learning_rate_for_epoch(epoch, value)

    # ---- public API ------------------------------------------------------------------------

    def get_learning_rate_for_epoch(self, epoch: int) -> float:
        """The learning rate of ``epoch``: stored, else computed from earlier epochs and stored."""
        if epoch < 1:
            raise ValueError(f"epochs count from 1, got {epoch}")
        data = self.epoch_data.get(epoch)
        if data is not None and data.learning_rate is not None:
            return data.learning_rate
        learning_rate = self._calc_new_for_epoch(epoch)
        self.set_default_learning_rate_for_epoch(epoch, learning_rate)
        return learning_rate

    def set_default_learning_rate_for_epoch(self, epoch: int, learning_rate: float) -> None:
        """Fix the learning rate of an epoch unless one is stored already."""
        data = self.epoch_data.setdefault(epoch, EpochData(None))
        if not data.learning_rate:
            data.learning_rate = float(learning_rate)

    def set_epoch_error(self, epoch: int, error: dict[str, Any]) -> None:
        """Record scores of an epoch (``train_score``, ``dev_score``, ``dev_error``, ...); nested dicts flatten."""
        if epoch not in self.epoch_data:
            self.get_learning_rate_for_epoch(epoch)
        flat: dict[str, Any] = {}
        for key, value in error.items():
            if isinstance(value, dict):
                if len(value) == 1:
                    flat[key] = float(next(iter(value.values())))
                    continue
                for sub_key, sub_value in value.items():
                    flat[f"{key}_{sub_key.split(':', 1)[-1]}"] = float(sub_value)
            else:
                flat[key] = value if isinstance(value, str) else float(value)
        self.epoch_data[epoch].error.update(flat)

    def set_epoch_meta(self, epoch: int, meta: dict[str, Any]) -> None:
        """Record facts about an epoch as RETURNN does: ``':meta:<name>'`` entries of its error dict, values verbatim."""
        if epoch not in self.epoch_data:
            self.get_learning_rate_for_epoch(epoch)
        self.epoch_data[epoch].error.update({f":meta:{k}": v for k, v in meta.items()})

    def get_error_key(self, epoch: int) -> str | None:
        """The score key that decides learning rates (``learning_rate_control_error_measure``, else dev_score...)."""
        data = self.epoch_data.get(epoch)
        if data is None or not data.error:
            keys = self.error_measure_key
            return keys[0] if isinstance(keys, list) else keys
        error = {k: v for k, v in data.error.items() if not isinstance(v, str) and not k.startswith(":meta:")}
        if not error:
            return None
        wanted = self.error_measure_key if isinstance(self.error_measure_key, list) else [self.error_measure_key]
        candidates = [k for key in wanted if key for k in (key, key + "_output")] + ["dev_score", "dev_score_output"]
        for key in candidates:
            if key in error:
                return key
        for prefix in ("dev_score_output/output", "dev_score_output/", "dev_"):
            for key in sorted(error):
                if key.startswith(prefix):
                    return key
        for key in ("train_score", "train_score_output"):
            if key in error:
                return key
        return min(error)

    def get_epoch_error_key_value(self, epoch: int) -> tuple[str | None, float | None]:
        """The deciding score of an epoch and its key, or (None, None)."""
        key = self.get_error_key(epoch)
        data = self.epoch_data.get(epoch)
        if key is None or data is None or key not in data.error:
            return None, None
        return key, data.error[key]

    def get_last_best_epoch(self, last_epoch: int, *, first_epoch: int = 1, filter_score: float = math.inf,
                            only_last_n: int = -1, min_score_dist: float = 0.0) -> int | None:
        """The best epoch by the deciding score in [first_epoch, last_epoch], counting only the newest key."""
        values = [(self.get_epoch_error_key_value(ep), ep) for ep in range(first_epoch, last_epoch + 1)]
        values = [(kv, ep) for kv, ep in values if kv[1] is not None]
        if not values:
            return None
        last_key, latest = values[-1][0]
        scores = [(v, ep) for (key, v), ep in values if key == last_key and v <= filter_score]
        if only_last_n >= 1:
            scores = scores[-only_last_n:]
        scores = [(v, ep) for v, ep in scores if v + min_score_dist < latest]
        return min(scores)[1] if scores else None

    def save(self) -> None:
        """Write the state file atomically (a kill mid-write keeps the previous complete file)."""
        if not self.filename:
            return
        with atomic_write(self.filename) as f:
            f.write(format_epoch_data(self.epoch_data))

    def load(self) -> None:
        """Read the state file (RETURNN's format)."""
        self.epoch_data = read_learning_rate_file(self.filename)

    # ---- decisions -------------------------------------------------------------------------

    def _calc_new_for_epoch(self, epoch: int) -> float:
        if self.min_num_epochs_per_new_learning_rate > 1:
            last = [self.epoch_data[e].learning_rate for e in self._last_epochs(epoch, self.min_num_epochs_per_new_learning_rate)]
            if len(set(last)) >= 2 or 0 < len(last) < self.min_num_epochs_per_new_learning_rate:
                return last[-1]
        return self._calc_for_epoch(epoch)

    def _calc_for_epoch(self, epoch: int) -> float:
        return self.most_recent_learning_rate(epoch)

    def most_recent_learning_rate(self, epoch: int, *, exclude_current: bool = True) -> float:
        """The newest stored learning rate before (or at) ``epoch``, else the default."""
        for e in sorted(self.epoch_data, reverse=True):
            if e > epoch or (exclude_current and e == epoch) or self.epoch_data[e].learning_rate is None:
                continue
            return self.epoch_data[e].learning_rate
        return self.default_learning_rate

    def decay_or_grow(self, learning_rate: float, *, decay: bool) -> float:
        """Apply ``learning_rate_decay`` (bounded by ``min_learning_rate``) or ``learning_rate_growth``."""
        if decay:
            return max(_apply(learning_rate, self.learning_rate_decay), self.min_learning_rate)
        return _apply(learning_rate, self.learning_rate_growth)

    def relative_error(self, old_epoch: int, new_epoch: int) -> float | None:
        """(new - old) / |new| (or / |old|) of the deciding score, optionally scaled by the learning rate."""
        old_key, old = self.get_epoch_error_key_value(old_epoch)
        new_key, new = self.get_epoch_error_key_value(new_epoch)
        if old is None or new is None or old_key != new_key:
            return None
        denominator = abs(old) if self.relative_error_div_by_old else abs(new)
        if denominator == 0:
            return 0.0 if new == old else math.copysign(math.inf, new - old)
        relative = (new - old) / denominator
        if self.relative_error_also_relative_to_learning_rate:
            learning_rate = self.most_recent_learning_rate(new_epoch, exclude_current=False)
            if learning_rate > 0:
                relative /= learning_rate / self.default_learning_rate
        return relative

    def _last_epochs(self, epoch: int, count: int) -> list[int]:
        return sorted(e for e in self.epoch_data if e < epoch)[-count:]

    def _newbob_step(self, epoch: int, change: Callable[[int, int], float | None], threshold: float) -> float:
        """Last epoch's rate, decayed if ``change(before_last, last)`` exceeds ``threshold`` (else grown)."""
        previous = self._last_epochs(epoch, 2)
        if not previous or self.epoch_data[previous[-1]].learning_rate is None:
            return self.default_learning_rate
        learning_rate = self.epoch_data[previous[-1]].learning_rate
        if len(previous) < 2:
            return learning_rate
        value = change(previous[0], previous[1])
        if value is None:
            return learning_rate
        return self.decay_or_grow(learning_rate, decay=value > threshold)

    def absolute_error(self, old_epoch: int, new_epoch: int) -> float | None:
        """new - old of the deciding score, or None if either is missing or their keys differ."""
        old_key, old = self.get_epoch_error_key_value(old_epoch)
        new_key, new = self.get_epoch_error_key_value(new_epoch)
        if old is None or new is None or old_key != new_key:
            return None
        return new - old


class NewbobRelative(LearningRateControl):
    """Decay when the relative change of the deciding score exceeds ``newbob_relative_error_threshold``."""

    kind = "newbob"

    def __init__(self, *, relative_error_threshold: float = -0.01, **kwargs):
        super().__init__(**kwargs)
        self.relative_error_threshold = relative_error_threshold

    def _calc_for_epoch(self, epoch: int) -> float:
        return self._newbob_step(epoch, self.relative_error, self.relative_error_threshold)


class NewbobAbs(LearningRateControl):
    """Decay when the absolute change of the deciding score exceeds ``newbob_error_threshold``."""

    kind = "newbob_abs"

    def __init__(self, *, error_threshold: float = -0.01, **kwargs):
        super().__init__(**kwargs)
        self.error_threshold = error_threshold

    def _calc_for_epoch(self, epoch: int) -> float:
        return self._newbob_step(epoch, self.absolute_error, self.error_threshold)


class NewbobMultiEpoch(LearningRateControl):
    """Newbob on the mean relative change over ``newbob_multi_num_epochs`` (for ``partition_epoch``)."""

    kind = "newbob_multi_epoch"

    def __init__(self, *, num_epochs: int = 5, update_interval: int = 5, relative_error_threshold: float = -0.01, **kwargs):
        super().__init__(**kwargs)
        if num_epochs < 1 or update_interval < 1:
            raise ConfigError('config keys "newbob_multi_num_epochs" and "newbob_multi_update_interval" must be >= 1, '
                              f"got {num_epochs} and {update_interval}")
        self.num_epochs = num_epochs
        self.update_interval = update_interval
        self.relative_error_threshold = relative_error_threshold

    def _calc_for_epoch(self, epoch: int) -> float:
        learning_rate = self.most_recent_learning_rate(epoch)
        if self.update_interval > 1 and epoch % self.update_interval != 1:
            return learning_rate
        last = self._last_epochs(epoch, self.num_epochs + 1)
        if len(last) <= 1:
            return learning_rate
        errors = [self.relative_error(a, b) for a, b in zip(last[:-1], last[1:])]
        if any(e is None for e in errors):
            return learning_rate
        return self.decay_or_grow(learning_rate, decay=float(numpy.mean(errors)) > self.relative_error_threshold)


CONTROL_TYPES: dict[str, type[LearningRateControl]] = {
    "constant": LearningRateControl,
    "newbob": NewbobRelative,
    "newbob_rel": NewbobRelative,
    "newbob_relative": NewbobRelative,
    "newbob_abs": NewbobAbs,
    "newbob_multi_epoch": NewbobMultiEpoch,
}


def learning_rate_control_from_config(config) -> LearningRateControl:
    """Build the control named by ``learning_rate_control`` (default "constant") from RETURNN's keys."""
    kind = config.value("learning_rate_control", "constant")
    if kind not in CONTROL_TYPES:
        raise ConfigError(f'config key "learning_rate_control": unknown {kind!r}; known: {", ".join(sorted(CONTROL_TYPES))}')
    cls = CONTROL_TYPES[kind]
    kwargs = dict(
        default_learning_rate=config.float("learning_rate", 1.0),
        min_learning_rate=config.float("min_learning_rate", 0.0),
        default_learning_rates=_learning_rates_list(config),
        error_measure_key=config.typed_value("learning_rate_control_error_measure"),
        relative_error_also_relative_to_learning_rate=config.bool("learning_rate_control_relative_error_relative_lr", False),
        min_num_epochs_per_new_learning_rate=config.int("learning_rate_control_min_num_epochs_per_new_lr", 0),
        relative_error_div_by_old=config.bool("newbob_relative_error_div_by_old", False),
        learning_rate_decay=_update(config, "learning_rate_decay", "newbob_learning_rate_decay", 0.5),
        learning_rate_growth=_update(config, "learning_rate_growth", "newbob_learning_rate_growth", 1.0),
        filename=config.value("learning_rate_file"),
    )
    if cls is NewbobRelative:
        kwargs["relative_error_threshold"] = config.float("newbob_relative_error_threshold", -0.01)
    elif cls is NewbobAbs:
        kwargs["error_threshold"] = config.float("newbob_error_threshold", -0.01)
    elif cls is NewbobMultiEpoch:
        kwargs["num_epochs"] = config.int("newbob_multi_num_epochs", 5)
        kwargs["update_interval"] = config.int("newbob_multi_update_interval", kwargs["num_epochs"])
        kwargs["relative_error_threshold"] = config.float("newbob_relative_error_threshold", -0.01)
    return cls(**kwargs)


def _learning_rates_list(config) -> list | dict | None:
    value = config.typed_value("learning_rates")
    if isinstance(value, str):
        return config.float_list("learning_rates")
    return value


def _update(config, key: str, old_key: str, default: float) -> Update:
    value = config.typed_value(key, config.typed_value(old_key, default))
    if callable(value):
        return value
    try:
        return float(value)
    except (TypeError, ValueError):
        raise ConfigError(f'config key "{key}": expected a float or a function lr -> lr, got {value!r}') from None


def _apply(learning_rate: float, update: Update) -> float:
    return float(update(learning_rate)) if callable(update) else learning_rate * update


def _as_epoch_dict(rates: list | dict | None) -> dict[int, float]:
    if not rates:
        return {}
    if isinstance(rates, dict):
        return {int(k): float(v) for k, v in rates.items()}
    return {i + 1: float(v) for i, v in enumerate(rates)}
