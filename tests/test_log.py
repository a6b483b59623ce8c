"""Logging: verbosity levels and log files."""

from __future__ import annotations

import io
import logging

import pytest

from returnn.config import Config
from returnn.errors import ConfigError
from returnn.log import DETAIL, STEP, init_log, init_log_from_config, level_for_verbosity, logger


def test_log_verbosity_filters_levels():
    stream = io.StringIO()
    init_log(verbosity=3, stream=stream)
    logger.info("summary")
    logger.log(DETAIL, "detail")
    logger.log(STEP, "per step")
    logger.debug("debugging")
    assert stream.getvalue().splitlines() == ["summary", "detail"]


def test_log_verbosity_zero_is_quiet_and_five_shows_all():
    assert level_for_verbosity(0) == logging.ERROR
    assert level_for_verbosity(5) == logging.DEBUG == level_for_verbosity(9)
    stream = io.StringIO()
    init_log(verbosity=0, stream=stream)
    logger.info("hidden")
    logger.error("shown")
    assert stream.getvalue() == "shown\n"


def test_log_files_from_config_get_timestamps_and_folders(tmp_path):
    paths = [tmp_path / "a" / "one.log", tmp_path / "b" / "c" / "two.log"]
    config = Config({"log": [str(p) for p in paths], "log_verbosity": 4})
    init_log_from_config(config)
    logger.log(STEP, "step 1 loss 0.5")
    for handler in logger.handlers:
        handler.flush()
    for path in paths:
        line = path.read_text().strip()
        assert line.endswith("step 1 loss 0.5")
        assert line[:4].isdigit()
    init_log(verbosity=3)  # closes the files again


def test_log_path_under_a_regular_file_is_a_config_error_naming_the_key(tmp_path):
    (tmp_path / "plain").write_text("")
    path = str(tmp_path / "plain" / "run.log")
    with pytest.raises(ConfigError, match=r'config key "log": cannot create or write the log file .*run.log.*plain.*File exists'):
        init_log_from_config(Config({"log": path}))
    assert logger.handlers  # the console still reports the error
    init_log(verbosity=3)
