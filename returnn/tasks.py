"""The registry of tasks that the ``task`` config key selects, and the check of the ``backend`` keys."""

from __future__ import annotations

import importlib
from typing import Callable

from returnn.config import Config
from returnn.config_check import check_config
from returnn.config_keys import warn_near_miss_keys
from returnn.errors import TaskError
from returnn.log import logger

TaskRunner = Callable[[Config], None]

# Task name -> "module:function". Modules are imported only when their task runs, so that
# `rnn.py` starts fast and a task's heavy dependencies load only where needed.
_TASKS: dict[str, str] = {
    "train": "returnn.tf.engine_tasks:run_train",
    "eval": "returnn.tf.engine_tasks:run_eval",
    "forward": "returnn.tf.engine_tasks:run_forward",
    "search": "returnn.tf.engine_tasks:run_search",
    "export": "returnn.tf.export:run_export",
    "nop": "returnn.tasks:run_nop",
}
_ACCEPTED_BACKENDS = ("tensorflow", "tensorflow-net-dict", "tf")


def register_task(name: str, target: str | TaskRunner) -> None:
    """Make ``task = name`` run ``target`` (a callable or a "module:function" string)."""
    _TASKS[name] = target


def known_tasks() -> list[str]:
    """Names of all registered tasks, sorted."""
    return sorted(_TASKS)


def run_task(config: Config) -> None:
    """Run the task named by the config key ``task`` (default "train"), after the start-up checks of the config."""
    name = config.value("task", "train")
    if name not in _TASKS:
        raise TaskError(f'config key "task": unknown task {name!r} (from {config.origin("task")}); '
                        f"known tasks: {', '.join(known_tasks())}")
    check_config(config, name)
    warn_near_miss_keys(config)
    runner = _resolve(name, _TASKS[name])
    logger.info(f"Task: {name}")
    runner(config)


def check_backend(config: Config) -> None:
    """Accept RETURNN's TensorFlow backend settings; reject a config written for another backend."""
    backend = config.value("backend")
    if backend is not None and backend.lower() not in _ACCEPTED_BACKENDS:
        raise TaskError(f'config key "backend": {backend!r} (from {config.origin("backend")}) is not supported; '
                        f"this framework runs TensorFlow only: use backend = \"tensorflow\" "
                        f"(accepted: {', '.join(_ACCEPTED_BACKENDS)})")
    for key in ("use_theano", "use_pytorch", "use_torch"):
        if config.bool(key, False):
            raise TaskError(f'config key "{key}" = True (from {config.origin(key)}): this framework runs TensorFlow only; '
                            'remove the key or set use_tensorflow = True')
    if config.has("use_tensorflow") and not config.bool("use_tensorflow") and backend is None:
        raise TaskError(f'config key "use_tensorflow" = False (from {config.origin("use_tensorflow")}): '
                        'this framework runs TensorFlow only; set use_tensorflow = True or backend = "tensorflow"')


def run_nop(config: Config) -> None:
    """Task "nop": load the config and set up logging, then stop (checks a config without running it)."""
    logger.info(f"Config loaded with {len(config.keys())} keys; task nop does nothing more.")


def _resolve(name: str, target: str | TaskRunner) -> TaskRunner:
    if callable(target):
        return target
    module_name, _, func_name = target.partition(":")
    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError as exc:
        if exc.name is not None and module_name.startswith(exc.name):
            raise TaskError(f"task {name!r} needs module {module_name}, which this installation does not have yet") from exc
        raise
    return getattr(module, func_name)
