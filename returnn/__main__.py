"""Command line: ``rnn.py CONFIG [CONFIG ...] [++key value ...]`` (also ``python -m returnn``, ``rnn``)."""

from __future__ import annotations

import logging
import os
import sys
import time
import traceback
from typing import Sequence

import returnn
from returnn.config import Config, set_global_config
from returnn.errors import ReturnnError
from returnn.log import init_log_from_config, logger
from returnn.tasks import check_backend, known_tasks, run_task

USAGE = """usage: rnn.py CONFIG [CONFIG ...] [++key value ...]

Runs the task of a RETURNN-style config (task = train, eval, forward, search, ...).
Config files are Python (first line "#!" or *.py), JSON ("{"), YAML (*.yaml, *.yml)
or line-based ("key value" per line); later files override earlier ones.

  ++key value   override any config key; the value's type is inferred
                (int, float, True/False, None, [lists], {dicts} or a string)
  --debug       show full tracebacks on errors (same as ++debug True)
  --version     print the version and exit
  -h, --help    print this help and exit

Known tasks: {tasks}
"""


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point; returns the process exit code (0 ok, 1 error, 2 bad usage)."""
    args = list(sys.argv[1:] if argv is None else argv)
    usage = USAGE.replace("{tasks}", ", ".join(known_tasks()))
    if not args:
        sys.stderr.write(usage)
        return 2
    if "-h" in args or "--help" in args:
        sys.stdout.write(usage)
        return 0
    if "--version" in args:
        sys.stdout.write(f"returnn {returnn.__version__}\n")
        return 0
    debug = "--debug" in args or _debug_override(args)
    args = [arg for arg in args if arg != "--debug"]
    config = Config()
    set_global_config(config)  # a Python config may call get_global_config() while it is loaded
    try:
        config.parse_cmd_args(args)
        debug = debug or config.bool("debug", False)
        init_log_from_config(config)
        _log_startup(config)
        check_backend(config)
        run_task(config)
    except ReturnnError as exc:
        if debug:
            traceback.print_exc()
        _print_error(exc)
        return 1
    except KeyboardInterrupt:
        sys.stderr.write("interrupted\n")
        return 130
    return 0


def _debug_override(args: Sequence[str]) -> bool:
    """Whether ``++debug`` is set true on the command line (seen before any config file runs)."""
    for i, arg in enumerate(args[:-1]):
        if arg == "++debug":
            return args[i + 1].strip().lower() in ("true", "1", "yes")
    return False


def _log_startup(config: Config) -> None:
    logger.info(f"returnn {returnn.__version__} starting up, pid {os.getpid()}, {time.strftime('%Y-%m-%d %H:%M:%S')}")
    logger.info(f"Python {sys.version.split()[0]}, config files: {', '.join(config.files) or '(none)'}")


def _print_error(exc: BaseException) -> None:
    """One paragraph on stderr, also written to the log files; no traceback."""
    message = f"error: {type(exc).__name__}: {exc}"
    sys.stdout.flush()
    sys.stderr.write(message + "\n(run with --debug or ++debug True for the full traceback)\n")
    record = logger.makeRecord(logger.name, logging.ERROR, __file__, 0, message, None, None)
    for handler in logger.handlers:
        if isinstance(handler, logging.FileHandler):
            handler.handle(record)


if __name__ == "__main__":
    sys.exit(main())
