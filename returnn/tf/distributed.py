"""``distributed``: training on several devices with ``tf.distribute`` (the strategy, and the batch split).

Config: ``distributed = {"strategy": "mirrored"}`` (every local GPU, else the CPU),
``{"strategy": "mirrored", "devices": ["/gpu:0", "/gpu:1"]}``, or ``{"strategy": "multi_worker"}`` (the cluster of
``TF_CONFIG``). Each train step splits the batch by sequences over the replicas; the strategy all-reduces the
gradients, and every replica applies the same update to its copy of the params (see
``returnn.tf.steps.make_distributed_train_step``). See docs/distributed.rst.
"""

from __future__ import annotations

import contextlib
import json
import os
from typing import Any, ContextManager, Mapping

import tensorflow as tf

from returnn.errors import ConfigError
from returnn.log import logger
from returnn.tensor.extern_data import size_keys

STRATEGIES = {"mirrored": ("devices",), "multi_worker": ()}  # strategy -> its options besides "strategy"
_NEXT_STEP = {"parameter_server": "ParameterServerStrategy is not supported"}


def strategy_from_config(config: Any) -> tf.distribute.Strategy | None:
    """The strategy of config key ``distributed``, or None when it is unset (one device, no strategy)."""
    _refuse_horovod(config)
    spec = config.typed_value("distributed")
    if spec is None or spec is False:
        return None
    if isinstance(spec, str):
        spec = {"strategy": spec}
    if not isinstance(spec, dict) or "strategy" not in spec:
        raise ConfigError(f'config key "distributed": expected a dict with "strategy" (e.g. {{"strategy": '
                          f'"mirrored"}}), got {spec!r}')
    kind = spec["strategy"]
    if kind not in STRATEGIES:
        why = f" ({_NEXT_STEP[kind]})" if kind in _NEXT_STEP else ""
        raise ConfigError(f'config key "distributed": unknown strategy {kind!r}{why}; known: {", ".join(STRATEGIES)}')
    unknown = sorted(set(spec) - {"strategy", *STRATEGIES[kind]})
    if unknown:
        raise ConfigError(f'config key "distributed": strategy {kind!r} has no option {unknown[0]!r}; '
                          f"options: {', '.join(STRATEGIES[kind]) or 'none'}")
    if kind == "multi_worker":
        return _multi_worker_strategy()
    devices = _checked_devices(spec.get("devices"))
    strategy = tf.distribute.MirroredStrategy(devices=devices)
    logger.info(f"distributed: mirrored strategy over {strategy.num_replicas_in_sync} replica(s): "
                f"{', '.join(strategy.extended.worker_devices)}")
    return strategy


def _multi_worker_strategy() -> tf.distribute.Strategy:
    """MultiWorkerMirroredStrategy over the cluster of ``TF_CONFIG`` (one worker of the local devices without it)."""
    _check_tf_config(os.environ.get("TF_CONFIG"))
    try:
        strategy = tf.distribute.MultiWorkerMirroredStrategy()
    except (RuntimeError, ValueError) as exc:
        raise ConfigError(f'config key "distributed": strategy "multi_worker" could not start: {exc}. It must be '
                          "made before TensorFlow runs any op (build the Engine first)") from exc
    resolver = strategy.cluster_resolver
    logger.info(f"distributed: multi_worker strategy, {strategy.num_replicas_in_sync} replica(s) in all; this is "
                f"{resolver.task_type or 'the only worker'} {resolver.task_id if resolver.task_type else ''}".rstrip())
    return strategy


def _check_tf_config(text: str | None) -> None:
    """TF_CONFIG as MultiWorkerMirroredStrategy needs it: ``{"cluster": {"worker": [...]}, "task": {...}}``."""
    if not text:
        return
    try:
        value = json.loads(text)
    except ValueError as exc:
        raise ConfigError(f"environment variable TF_CONFIG (for distributed multi_worker): not JSON ({exc})") from exc
    cluster, task = (value.get("cluster"), value.get("task")) if isinstance(value, dict) else (None, None)
    workers = cluster.get("worker", []) + cluster.get("chief", []) if isinstance(cluster, dict) else []
    if not workers or not isinstance(task, dict) or task.get("type") not in ("worker", "chief") \
            or not isinstance(task.get("index"), int):
        raise ConfigError('environment variable TF_CONFIG (for distributed multi_worker): expected {"cluster": '
                          '{"worker": ["host:port", ...]}, "task": {"type": "worker", "index": 0}}, got ' + text)
    if not 0 <= task["index"] < len(cluster.get(task["type"], [])):
        raise ConfigError(f'environment variable TF_CONFIG: task {task["type"]} {task["index"]} is not in the '
                          f"cluster {cluster}")


def is_chief(strategy: tf.distribute.Strategy | None) -> bool:
    """Whether this process writes checkpoints, the learning-rate file and summaries: always, unless it is a
    worker of a multi-worker cluster other than its chief (task "chief", else worker 0)."""
    resolver = getattr(strategy, "cluster_resolver", None) if strategy is not None else None
    if resolver is None or not resolver.task_type:
        return True
    if resolver.task_type == "chief":
        return True
    return resolver.task_type == "worker" and resolver.task_id == 0 and "chief" not in resolver.cluster_spec().as_dict()


def _checked_devices(devices: Any) -> list[str] | None:
    """The ``devices`` option, each one checked against TensorFlow's logical devices."""
    if devices is None:
        return None
    if not isinstance(devices, (list, tuple)) or not devices or not all(isinstance(d, str) for d in devices):
        raise ConfigError(f'config key "distributed": "devices" must be a non-empty list of device names such as '
                          f'"/gpu:0", got {devices!r}')
    known = [device.name for device in tf.config.list_logical_devices()]
    canonical = {_canonical(name): name for name in known}
    for device in devices:
        if _canonical(device) not in canonical:
            raise ConfigError(f'config key "distributed": no device {device!r} here; devices: {", ".join(known)}')
    if len({_canonical(d) for d in devices}) != len(devices):
        raise ConfigError(f'config key "distributed": "devices" names a device twice: {devices!r}')
    return [canonical[_canonical(d)] for d in devices]


def _canonical(name: str) -> str:
    """``"/gpu:0"``, ``"GPU:0"``, ``"/job:localhost/replica:0/task:0/device:GPU:0"`` -> ``"gpu:0"``."""
    return name.lower().rsplit("/", 1)[-1].replace("device:", "")


def _refuse_horovod(config: Any) -> None:
    if config.bool("use_horovod", False):
        raise ConfigError('config key "use_horovod": Horovod is not supported; use distributed = '
                          '{"strategy": "mirrored"} for the GPUs of one machine (see docs/distributed.rst)')


def strategy_scope(strategy: tf.distribute.Strategy | None) -> ContextManager:
    """``strategy.scope()`` (variables made in it are mirrored), or a no-op without a strategy."""
    return strategy.scope() if strategy is not None else contextlib.nullcontext()


def replica_feed(feed: Mapping[str, Any], templates: Mapping[str, Any]) -> dict[str, Any]:
    """This replica's sequences of the global batch ``feed`` (inside ``strategy.run``): replica i of n takes
    sequences ``[i * B // n, (i + 1) * B // n)``, each dynamic axis cut to the longest of them."""
    ctx = tf.distribute.get_replica_context()
    n, i = ctx.num_replicas_in_sync, tf.cast(ctx.replica_id_in_sync_group, tf.int32)
    first_key = next(iter(feed))
    batch = tf.shape(feed[first_key])[0]
    start, end = i * batch // n, (i + 1) * batch // n
    local = {key: value[start:end] for key, value in feed.items()}
    for key, template in templates.items():
        if key not in local:
            continue
        for dim, size_key in size_keys(key, template).items():
            axis = template.dims.index(dim)
            longest = tf.reduce_max(tf.concat([local[size_key], [0]], axis=0))
            begin = tf.zeros([template.batch_ndim], tf.int32)
            size = tf.tensor_scatter_nd_update(tf.fill([template.batch_ndim], -1), [[axis]], [longest])
            local[key] = tf.slice(local[key], begin, size)
    return local


def assign_add(var: tf.Variable, value: Any) -> None:
    """``var += value`` on the copy of the running replica (every replica makes the same update), else on ``var``.

    A mirrored variable refuses ``assign_add`` in a replica without an aggregation; the update goes to the
    replica's own copy through its handle instead.
    """
    tf.raw_ops.AssignAddVariableOp(resource=var.handle, value=tf.cast(value, var.dtype))


def assign_sub(var: tf.Variable, value: Any) -> None:
    """``var -= value``, as ``assign_add``."""
    tf.raw_ops.AssignSubVariableOp(resource=var.handle, value=tf.cast(value, var.dtype))


def assign(var: tf.Variable, value: Any) -> None:
    """``var = value``, as ``assign_add``."""
    tf.raw_ops.AssignVariableOp(resource=var.handle, value=tf.cast(value, var.dtype))
