"""Helpers for tests, tools and demos: build a network from a dict (a rec loop around a unit dict), make a
random padded batch, capture log records."""

from __future__ import annotations

import contextlib
import logging
from typing import Any, Iterator, Mapping

import numpy as np

from returnn.log import logger
from returnn.tensor.data import Data
from returnn.tensor.extern_data import ExternData, seq_len_key
from returnn.tf.network import Network


@contextlib.contextmanager
def captured_log(level: int = logging.DEBUG) -> Iterator[list[logging.LogRecord]]:
    """Collect the records ``returnn.log.logger`` emits at ``level`` or above while the block runs."""
    records: list[logging.LogRecord] = []
    handler = logging.Handler(level)
    handler.emit = records.append
    old_level = logger.level
    logger.setLevel(min(level, old_level) if old_level else level)
    logger.addHandler(handler)
    try:
        yield records
    finally:
        logger.removeHandler(handler)
        logger.setLevel(old_level)


def build_network(net_dict: Mapping[str, Any], *, extern_data: ExternData | Mapping[str, Any],
                  random_seed: int = 42) -> Network:
    """A ``Network`` from a net dict and an ``extern_data`` dict (RETURNN's form) or ``ExternData``."""
    return Network(net_dict, extern_data=extern_data, random_seed=random_seed)


def rec_loop_dict(unit: Mapping[str, Any], *, source: Any = "data", outside: Mapping[str, Any] | None = None,
                  **rec_opts: Any) -> dict[str, Any]:
    """A net dict whose ``output`` is a rec layer running ``unit`` once per frame of ``source`` (``[]``: no
    input; give ``max_seq_len`` or ``target``); ``outside``: layers of the enclosing network (``base:x``).
    Every sublayer runs step by step unless ``optimize_move_layers_out=True`` is given."""
    rec_opts.setdefault("optimize_move_layers_out", False)
    return {**(outside or {}), "output": {"class": "rec", "from": source, "unit": dict(unit), **rec_opts}}


def rec_unit_network(net: Network, name: str = "output") -> Network:
    """The network run step by step of rec layer ``name``'s unit dict: its layers and their one-frame templates
    (all of the unit's layers when the loop optimizer is off)."""
    loop = getattr(net.layers[name], "loop", None)
    if loop is None or loop.plan.loop is None:
        raise ValueError(f"layer {name!r} is not a rec layer with a unit dict run step by step")
    return loop.plan.loop


def blstm_net_dict(*, layers: int = 3, n_out: int = 256, unit: str = "lstm", dropout: float = 0.0,
                   l2: float = 0.0) -> dict[str, Any]:
    """The bidirectional LSTM network of RETURNN's docs: ``lstm{i}_fw`` / ``lstm{i}_bw`` (directions 1 / -1),
    each layer reading both of the previous one, and a softmax ``output`` with ce loss."""
    net: dict[str, Any] = {}
    src: Any = "data"
    extra = {key: value for key, value in (("dropout", dropout), ("L2", l2)) if value}
    for i in range(layers):
        for name, direction in (("fw", 1), ("bw", -1)):
            net[f"lstm{i}_{name}"] = {"class": "rec", "unit": unit, "n_out": n_out, "direction": direction,
                                      "from": src, **extra}
        src = [f"lstm{i}_fw", f"lstm{i}_bw"]
    net["output"] = {"class": "softmax", "loss": "ce", "from": src}
    return net


class RandomBatch(dict):
    """A padded batch: ``{key: array, "key:seq_len": lengths}`` plus ``mask(key)`` of valid frames."""

    def __init__(self, values: Mapping[str, np.ndarray], templates: Mapping[str, Data]):
        super().__init__(values)
        self.templates = dict(templates)

    def seq_lens(self, key: str) -> np.ndarray:
        """[B] lengths of ``key``'s time dim."""
        return self[seq_len_key(key)]

    def mask(self, key: str) -> np.ndarray:
        """[B, T] bool, False on padded frames of ``key``."""
        lens = self.seq_lens(key)
        time_axis = self.templates[key].time_dim_axis
        max_len = self[key].shape[time_axis]
        return np.arange(max_len)[None, :] < lens[:, None]


def _random_values(template: Data, shape: tuple[int, ...], rng: np.random.Generator) -> np.ndarray:
    """Class indices below the vocab size for sparse data, normal floats (or small ints) otherwise."""
    if template.sparse:
        return rng.integers(0, template.dim, size=shape).astype(template.dtype)
    if np.dtype(template.dtype).kind in "iu":
        return rng.integers(0, 5, size=shape).astype(template.dtype)
    if np.dtype(template.dtype).kind == "b":
        return rng.random(shape) < 0.5
    return rng.standard_normal(shape).astype(template.dtype)


def random_batch(extern_data: Mapping[str, Data] | Mapping[str, Any], *, n_batch: int = 3,
                 max_time: int | Mapping[str, int] = 7, seed: int = 0, pad_value: float = 0.0) -> RandomBatch:
    """Random padded batch for every key: lengths differ per sequence (the first is ``max_time``).

    With one ``max_time`` all keys share lengths (framewise targets); a dict gives each key its own.
    Padded frames hold ``pad_value``.
    """
    templates = extern_data if isinstance(extern_data, ExternData) else ExternData(extern_data)
    rng = np.random.default_rng(seed)
    shared_lens: dict[int, np.ndarray] = {}
    values: dict[str, np.ndarray] = {}
    for key, template in templates.items():
        limit = max_time[key] if isinstance(max_time, Mapping) else max_time
        if isinstance(max_time, Mapping) or limit not in shared_lens:
            lens = rng.integers(1, limit + 1, size=n_batch).astype(np.int32)
            lens[0] = limit
            shared_lens.setdefault(limit, lens)
        lens = lens if isinstance(max_time, Mapping) else shared_lens[limit]
        shape = tuple(n_batch if dim.is_batch else (limit if dim.is_dynamic else dim.size) for dim in template.dims)
        array = _random_values(template, shape, rng)
        if template.time_dim is not None and template.time_dim.is_dynamic:
            mask = np.arange(limit)[None, :] < lens[:, None]
            mask = mask.reshape(mask.shape + (1,) * (len(shape) - 2))
            time_axis = template.time_dim_axis
            if time_axis != 1:
                mask = np.moveaxis(mask, 1, time_axis)
            array = np.where(mask, array, np.asarray(pad_value).astype(array.dtype))
            values[seq_len_key(key)] = lens.copy()
        values[key] = array
    return RandomBatch(values, templates)


def ragged_batch(rng: np.random.Generator, shape: tuple[int, ...], lens: Any, key: str) -> dict[str, np.ndarray]:
    """``{key: normal floats [B, T, ...] with zeros after each length, "key:seq_len": lens}``."""
    x = rng.standard_normal(shape).astype("float32")
    lens = np.asarray(lens, np.int32)
    mask = np.arange(shape[1])[None, :] < lens[:, None]
    x *= mask.reshape(mask.shape + (1,) * (len(shape) - 2))
    return {key: x, seq_len_key(key): lens}


def run_network(net_dict: Mapping[str, Any], *, extern_data: Mapping[str, Any], n_batch: int = 3,
                max_time: int | Mapping[str, int] = 7, seed: int = 0, pad_value: float = 0.0, train: bool = False,
                check_output: bool = True) -> tuple[Network, RandomBatch, dict[str, Data]]:
    """Build ``net_dict``, run it on a random batch; (net, batch, outputs). Checks that the computed
    ``output`` has the dims its template promised (``check_output``)."""
    net = build_network(net_dict, extern_data=extern_data)
    batch = random_batch(net.extern_data, n_batch=n_batch, max_time=max_time, seed=seed, pad_value=pad_value)
    out = net(batch, train=train)
    if check_output:
        assert out["output"].dims == net.templates["output"].dims, "output differs from its template"
    return net, batch, out
