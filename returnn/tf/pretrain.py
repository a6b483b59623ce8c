"""Pretraining: a network that grows over the first epochs (RETURNN's ``pretrain`` config key).

- ``pretrain = "default"``: layer-wise construction. Hidden layers are grouped by depth (distance
  from the extern data); stage 0 holds the first group plus the output layers, each later stage adds the
  next group, and the output layers read what the next group would read. The last stage is the full net.
- ``pretrain = {"repetitions": N, "construction_algo": "default" | func}``: each stage runs N epochs
  (an int, or a list per stage). ``func(idx, net_dict) -> net_dict | None`` builds stage ``idx`` from a
  copy of the full net dict; None ends pretraining (RETURNN's custom construction).
- a function ``pretrain(idx, net_dict)`` directly, as the ``construction_algo`` with one repetition.

Params move to the grown network by name where the shapes match.
"""

from __future__ import annotations

import copy
from typing import Any, Callable

from returnn.errors import ConfigError, LayerConfigError
from returnn.tf.net_graph import NetGraph

_MAX_STAGES = 1000


class Pretrain:
    """The net dict per epoch: pretraining stages first, then the full network."""

    def __init__(self, net_dict: dict, *, construction_algo: str | Callable = "default", repetitions: int | list = 1):
        self.full_net_dict = net_dict
        if construction_algo == "default":
            self.stages = _layerwise_stages(net_dict)
        elif callable(construction_algo):
            self.stages = _custom_stages(net_dict, construction_algo)
        else:
            raise ConfigError(f'config key "pretrain": unknown construction_algo {construction_algo!r}; '
                              'use "default" or a function (idx, net_dict) -> net_dict or None')
        reps = repetitions if isinstance(repetitions, (list, tuple)) else [repetitions] * len(self.stages)
        if len(reps) < len(self.stages):
            reps = list(reps) + [reps[-1]] * (len(self.stages) - len(reps))
        if any(int(r) < 0 for r in reps):
            raise ConfigError(f'config key "pretrain": "repetitions" must be >= 0, got {repetitions!r}')
        self.repetitions = [int(r) for r in reps[:len(self.stages)]]

    @property
    def num_pretrain_epochs(self) -> int:
        """Epochs spent in pretraining stages; the full network trains from the next epoch on."""
        return sum(self.repetitions)

    def net_dict_for_epoch(self, epoch: int) -> dict:
        """The net dict to train in ``epoch`` (1-based)."""
        remaining = epoch
        for stage, reps in zip(self.stages, self.repetitions):
            if remaining <= reps:
                return stage
            remaining -= reps
        return self.full_net_dict


def pretrain_from_config(config, net_dict: dict) -> Pretrain | None:
    """Read ``pretrain`` (and ``pretrain_repetitions``); None when pretraining is off."""
    value = config.typed_value("pretrain")
    if not value:
        return None
    repetitions = config.typed_value("pretrain_repetitions", 1)
    if value == "default":
        return Pretrain(net_dict, repetitions=repetitions)
    if callable(value):
        return Pretrain(net_dict, construction_algo=value, repetitions=repetitions)
    if isinstance(value, dict):
        unknown = set(value) - {"repetitions", "construction_algo"}
        if unknown:
            raise ConfigError(f'config key "pretrain": unknown option(s) {sorted(unknown)}; known: construction_algo, repetitions')
        return Pretrain(net_dict, construction_algo=value.get("construction_algo", "default"),
                        repetitions=value.get("repetitions", repetitions))
    raise ConfigError(f'config key "pretrain": expected "default", a dict or a function, got {value!r}')


def _layerwise_stages(net_dict: dict) -> list[dict]:
    """Stage k: hidden layers of depth <= k + 1, the output layers reading what depth k + 2 reads."""
    graph = NetGraph(net_dict)
    outputs = graph.roots()
    if not outputs:
        raise ConfigError('config key "pretrain" = "default" needs an output layer ("output" or one with a loss)')
    try:
        depths = graph.depths()
    except LayerConfigError as exc:
        raise ConfigError(f'config key "pretrain": {exc}') from None
    hidden = {n: d for n, d in depths.items() if n not in outputs}
    max_depth = max(hidden.values(), default=0)
    stages = []
    for keep_depth in range(1, max_depth):
        next_level = [n for n, d in hidden.items() if d == keep_depth + 1]
        stage = {n: copy.deepcopy(layer) for n, layer in net_dict.items() if n in hidden and hidden[n] <= keep_depth}
        for out in outputs:
            layer = copy.deepcopy(net_dict[out])
            layer["from"] = copy.deepcopy(net_dict[next_level[0]].get("from", "data"))
            stage[out] = layer
        stages.append(stage)
    return stages


def _custom_stages(net_dict: dict, func: Callable[[int, dict], Any]) -> list[dict]:
    stages = []
    for idx in range(_MAX_STAGES):
        stage = func(idx, copy.deepcopy(net_dict))
        if stage is None:
            return stages
        if not isinstance(stage, dict):
            raise ConfigError(f'config key "pretrain": construction_algo returned {type(stage).__name__} for index {idx}; '
                              "expected a net dict or None")
        stages.append(stage)
    raise ConfigError(f'config key "pretrain": construction_algo never returned None (stopped after {_MAX_STAGES} stages)')
