"""Task registry and backend checks."""

from __future__ import annotations

import pytest

from returnn.config import Config
from returnn.errors import TaskError
from returnn.tasks import check_backend, known_tasks, register_task, run_task


def test_tasks_registered_callable_runs():
    seen = []
    register_task("unit_test_task", lambda config: seen.append(config.int("x")))
    run_task(Config({"task": "unit_test_task", "x": 3}))
    assert seen == [3]
    assert {"train", "eval", "forward", "search", "export", "nop"} <= set(known_tasks())


def test_tasks_unknown_task_names_key_and_known_tasks():
    with pytest.raises(TaskError, match=r'"task": unknown task \'serch\'.*known tasks: .*search'):
        run_task(Config({"task": "serch"}))


def test_tasks_backend_checks():
    check_backend(Config({"backend": "tensorflow", "use_tensorflow": True}))
    with pytest.raises(TaskError, match='"backend".*torch'):
        check_backend(Config({"backend": "torch"}))
