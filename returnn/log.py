"""The package-wide logger and its set-up from ``log`` / ``log_verbosity``.

Verbosity 0 (quiet) .. 5 (per-step details), as in RETURNN. Messages go to stdout without
decoration and to every file in ``log`` with a timestamp. Code logs through ``logger``::

    from returnn.log import logger, DETAIL, STEP
    logger.info("epoch 3 ...")        # verbosity >= 2
    logger.log(DETAIL, "...")          # verbosity >= 3
    logger.log(STEP, "step 10 ...")    # verbosity >= 4
    logger.debug("...")                # verbosity 5
"""

from __future__ import annotations

import logging
import os
import sys
from typing import Sequence

from returnn.errors import ConfigError

logger = logging.getLogger("returnn")
logger.propagate = False

DETAIL = 15
STEP = 12
logging.addLevelName(DETAIL, "DETAIL")
logging.addLevelName(STEP, "STEP")

DEFAULT_VERBOSITY = 3
_LEVEL_BY_VERBOSITY = {0: logging.ERROR, 1: logging.WARNING, 2: logging.INFO, 3: DETAIL, 4: STEP, 5: logging.DEBUG}
_FILE_FORMAT = "%(asctime)s %(levelname)s %(message)s"


def level_for_verbosity(verbosity: int) -> int:
    """Map RETURNN's ``log_verbosity`` (0..5, larger values clamp to 5) to a logging level."""
    return _LEVEL_BY_VERBOSITY[max(0, min(5, int(verbosity)))]


def init_log(*, verbosity: int = DEFAULT_VERBOSITY, log_files: Sequence[str] = (), stream=None) -> None:
    """(Re)configure ``logger``: stdout (or ``stream``) plus the given files; creates their folders."""
    for handler in list(logger.handlers):
        logger.removeHandler(handler)
        handler.close()
    level = level_for_verbosity(verbosity)
    logger.setLevel(level)
    console = logging.StreamHandler(stream if stream is not None else sys.stdout)
    console.setFormatter(logging.Formatter("%(message)s"))
    logger.addHandler(console)
    for path in log_files:
        directory = os.path.dirname(os.path.abspath(path))
        os.makedirs(directory, exist_ok=True)
        file_handler = logging.FileHandler(path, encoding="utf-8")
        file_handler.setFormatter(logging.Formatter(_FILE_FORMAT))
        logger.addHandler(file_handler)


def init_log_from_config(config) -> None:
    """Set up logging from the config keys ``log`` (path or list of paths) and ``log_verbosity``; a log file that
    cannot be created is a ConfigError naming the path."""
    verbosity = config.int("log_verbosity", DEFAULT_VERBOSITY)
    log_files = [str(path) for path in config.list("log", [])]
    try:
        init_log(verbosity=verbosity, log_files=log_files)
    except OSError as exc:
        init_log(verbosity=verbosity)  # the console still reports the error
        files = ", ".join(map(repr, log_files))
        blocked = f"{exc.filename!r}: {exc.strerror}" if exc.filename else str(exc)
        raise ConfigError(f'config key "log": cannot create or write the log file {files} ({blocked}; '
                          f'from {config.origin("log")}); expected a file path in a writable folder') from None
