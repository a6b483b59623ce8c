"""Start-up checks: bad values and unwritable output paths fail before a task does real work."""

from __future__ import annotations

import os
import stat

import pytest

from returnn.__main__ import main
from returnn.config import Config
from returnn.config_check import check_config
from returnn.errors import ConfigError
from returnn.tasks import run_task


@pytest.mark.parametrize("key, value, expected", [
    ("batch_size", 2000.7, "an int >= 1"),
    ("batch_size", -100, "an int >= 1"),
    ("batch_size", {"data": 0}, "an int >= 1"),
    ("forward_batch_size", "5k", "an int >= 1"),
    ("learning_rate", -0.01, "a number >= 0"),
    ("learning_rates", [0.1, -0.1], "a list of numbers >= 0"),
    ("num_epochs", -3, "an int >= 1"),
    ("num_epochs", 2.5, "an int >= 1"),
    ("save_interval", 0, r"an int >= 1 \(save every N epochs\)"),
])
def test_bad_value_is_rejected_at_start_naming_key_value_and_expectation(key, value, expected):
    config = Config({"task": "nop", key: value})
    with pytest.raises(ConfigError, match=rf'config key "{key}": expected {expected}.*got {value!r}'.replace("[", r"\[")):
        run_task(config)


@pytest.mark.parametrize("values", [
    {"batch_size": 2000.0, "num_epochs": 3, "save_interval": 2, "learning_rate": 0},
    {"batch_size": {"data": 500, "classes": 200}, "learning_rates": [0.1, 0.05], "min_learning_rate": 1e-6},
    {"batch_size": "5000", "num_epochs": "2", "learning_rate": "0.001", "learning_rates": "0.1,0.05"},
])
def test_values_that_run_today_still_pass(values):
    check_config(Config(values), "nop")


def test_negative_num_epochs_on_command_line_exits_before_training(tmp_path, capsys):
    cfg = tmp_path / "train.config"
    cfg.write_text(f"task train\nmodel {tmp_path / 'net'}\n")
    assert main([str(cfg), "++num_epochs", "-3"]) == 1
    err = capsys.readouterr().err
    assert 'config key "num_epochs": expected an int >= 1, got -3 (from ++num_epochs on the command line)' in err
    assert not any(name.startswith("net.") for name in os.listdir(tmp_path))


def _unwritable_dir(tmp_path) -> str:
    """A folder no file can be created in: read-only, or (as root, whom chmod does not stop) under a file."""
    if os.geteuid() == 0:
        (tmp_path / "plain_file").write_text("")
        return str(tmp_path / "plain_file" / "sub")
    locked = tmp_path / "locked"
    locked.mkdir()
    locked.chmod(stat.S_IRUSR | stat.S_IXUSR)
    return str(locked)


@pytest.mark.parametrize("task, key", [
    ("train", "model"), ("train", "learning_rate_file"), ("forward", "output_file"), ("search", "search_output_file"),
])
def test_unwritable_output_path_fails_at_start_naming_key_and_path(tmp_path, task, key):
    path = os.path.join(_unwritable_dir(tmp_path), "out")
    try:
        with pytest.raises(ConfigError, match=rf'config key "{key}": cannot write .* at {path!r}'):
            check_config(Config({key: path}), task)
    finally:
        os.chmod(tmp_path, stat.S_IRWXU)
        for child in tmp_path.iterdir():
            child.chmod(stat.S_IRWXU)


def test_unwritable_path_under_a_regular_file_fails_even_as_root(tmp_path):
    (tmp_path / "f").write_text("")
    with pytest.raises(ConfigError, match=r'config key "model": cannot write the folder of the checkpoints'):
        check_config(Config({"model": str(tmp_path / "f" / "net")}), "train")


def test_output_paths_get_missing_folders_and_leave_no_files(tmp_path):
    config = Config({"model": str(tmp_path / "a" / "net"), "learning_rate_file": str(tmp_path / "b" / "c" / "lr")})
    check_config(config, "train")
    assert os.listdir(tmp_path / "a") == [] and os.listdir(tmp_path / "b" / "c") == []
    check_config(Config({"output_file": str(tmp_path / "x" / "out.hdf")}), "nop")  # nop writes nothing
    assert not (tmp_path / "x").exists()
