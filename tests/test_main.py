"""The command line: usage, exit codes, one-paragraph errors, --debug, python -m and rnn.py."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from returnn.__main__ import main

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def run_cli(*args: str, entry: str = "rnn.py") -> subprocess.CompletedProcess:
    cmd = [sys.executable, os.path.join(ROOT, "rnn.py")] if entry == "rnn.py" else [sys.executable, "-m", "returnn"]
    env = dict(os.environ, PYTHONPATH=ROOT)
    return subprocess.run(cmd + list(args), capture_output=True, text=True, env=env, cwd=ROOT, timeout=60)


def test_main_without_arguments_prints_usage_and_fails(capsys):
    assert main([]) == 2
    assert "usage: rnn.py CONFIG" in capsys.readouterr().err


def test_main_help_lists_tasks(capsys):
    assert main(["--help"]) == 0
    out = capsys.readouterr().out
    assert "++key value" in out and "train" in out and "forward" in out


def test_main_runs_nop_task_from_line_config(tmp_path, capsys):
    cfg = tmp_path / "nop.cfg"
    cfg.write_text("task nop\nlog_verbosity 2\n")
    assert main([str(cfg)]) == 0
    assert "Task: nop" in capsys.readouterr().out


def test_main_malformed_python_config_is_one_paragraph(tmp_path):
    cfg = tmp_path / "broken.config"
    cfg.write_text("#!rnn.py\ntask = 'nop'\nnetwork = {'a': [\n")
    result = run_cli(str(cfg))
    assert result.returncode == 1
    assert "broken.config', line 3: syntax error" in result.stderr
    assert "Traceback" not in result.stderr + result.stdout


def test_main_debug_shows_traceback(tmp_path):
    cfg = tmp_path / "broken.py"
    cfg.write_text("x = 1 / 0\n")
    result = run_cli(str(cfg), "--debug")
    assert result.returncode == 1
    assert "Traceback" in result.stderr and "ZeroDivisionError" in result.stderr
    result = run_cli(str(cfg), "++debug", "True", entry="-m")
    assert result.returncode == 1 and "ZeroDivisionError" in result.stderr and "Traceback" in result.stderr
    ok = tmp_path / "ok.cfg"
    ok.write_text("task nop\n")
    result = run_cli(str(ok), "++debug", "True", "++task", "nonsense", entry="-m")
    assert result.returncode == 1 and "Traceback" in result.stderr


def test_main_missing_config_file(tmp_path):
    result = run_cli(str(tmp_path / "missing.config"))
    assert result.returncode == 1
    assert "missing.config' does not exist" in result.stderr and "Traceback" not in result.stderr


def test_main_unknown_task_lists_known_ones(tmp_path, capsys):
    cfg = tmp_path / "task.json"
    cfg.write_text('{"task": "trian"}')
    assert main([str(cfg)]) == 1
    err = capsys.readouterr().err
    assert "unknown task 'trian'" in err and "known tasks: eval, export, forward, nop, search, train" in err


def test_main_double_dash_override_points_to_plus_plus(capsys):
    assert main(["++task", "nop", "--num_epochs", "3"]) == 1
    assert "'++num_epochs VALUE'" in capsys.readouterr().err


@pytest.mark.parametrize("settings", [{"use_tensorflow": True}, {"backend": "tensorflow"}, {"backend": "tensorflow-net-dict"}])
def test_main_accepts_tensorflow_backend_settings(tmp_path, settings, capsys):
    cfg = tmp_path / "tf.py"
    cfg.write_text("task = 'nop'\n" + "".join(f"{k} = {v!r}\n" for k, v in settings.items()))
    assert main([str(cfg)]) == 0


@pytest.mark.parametrize("line", ["backend = 'torch'", "use_tensorflow = False", "use_theano = True"])
def test_main_rejects_other_backends(tmp_path, line, capsys):
    cfg = tmp_path / "other.py"
    cfg.write_text(f"task = 'nop'\n{line}\n")
    assert main([str(cfg)]) == 1
    assert "TensorFlow only" in capsys.readouterr().err


def test_main_version(capsys):
    assert main(["--version"]) == 0
    assert capsys.readouterr().out.startswith("returnn ")


def test_main_writes_log_file_with_timestamps(tmp_path):
    log_path = tmp_path / "logs" / "sub" / "returnn.log"
    cfg = tmp_path / "log.py"
    cfg.write_text(f"task = 'nop'\nlog = [{str(log_path)!r}]\nlog_verbosity = 3\n")
    result = run_cli(str(cfg))
    assert result.returncode == 0, result.stderr
    assert "Task: nop" in result.stdout
    text = log_path.read_text()
    assert "Task: nop" in text
    assert text[:4].isdigit() and text[4] == "-"  # starts with a date


def test_main_runs_a_config_with_returnns_imports_and_sets_the_global_config(tmp_path, capsys):
    """The first lines of RETURNN's demo configs import these names; get_global_config() is the config run."""
    cfg = tmp_path / "demo.config"
    cfg.write_text(
        "#!rnn.py\n"
        "from returnn.util.basic import get_login_username, NotSpecified, BackendEngine\n"
        "from returnn.tf.util.data import DimensionTag, batch_dim, SpatialDim, FeatureDim\n"
        "from returnn.tensor import Tensor, TensorDict, Dim, single_step_dim\n"
        "from returnn.tf.util.basic import nd_indices, safe_log, where_bc\n"
        "from returnn.tf.network import TFNetwork\n"
        "from returnn.config import get_global_config\n"
        "task = 'nop'\n"
        "log_verbosity = 2\n"
        "model = '/tmp/%s/demo/model' % get_login_username()\n"
        "time_dim = DimensionTag(kind=DimensionTag.Types.Spatial, description='time')\n"
        "seen_keys = sorted(get_global_config().typed_dict)\n")
    assert main([str(cfg)]) == 0
    assert "Task: nop" in capsys.readouterr().out
    from returnn.config import get_global_config
    config = get_global_config()
    assert config.value("model").endswith("/demo/model") and config.typed_value("time_dim").kind == "spatial"
    assert config.typed_value("seen_keys") == []  # read while the file was loaded: the config being built
