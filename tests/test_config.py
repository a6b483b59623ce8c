"""Config: the four file formats, ++ overrides, typed getters and their errors."""

from __future__ import annotations

import json
import textwrap

import pytest

from returnn.config import Config, split_cmd_args
from returnn.errors import ConfigError, ConfigTypeError

EXPECTED = {
    "task": "train",
    "num_epochs": 5,
    "learning_rate": 0.001,
    "adam": True,
    "model": "/tmp/net-model/network",
    "batch_size": 5000,
    "max_seqs": 40,
    "chunking": "200:100",
    "log_verbosity": 4,
    "extern_data": {"data": {"dim": 9}, "classes": {"dim": 2, "sparse": True}},
    "learning_rate_control": None,
}


def write(tmp_path, name: str, text: str) -> str:
    path = tmp_path / name
    path.write_text(textwrap.dedent(text).lstrip("\n"))
    return str(path)


def four_formats(tmp_path) -> dict[str, str]:
    python = write(tmp_path, "setup.config", """
        #!returnn.py
        task = "train"
        num_epochs = 5
        learning_rate = 0.001
        adam = True
        model = "/tmp/net-model/network"
        batch_size = 5000
        max_seqs = 40
        chunking = "200:100"
        log_verbosity = 4
        extern_data = {"data": {"dim": 9}, "classes": {"dim": 2, "sparse": True}}
        learning_rate_control = None
        """)
    json_path = write(tmp_path, "setup.json", json.dumps(EXPECTED, indent=2))
    yaml_path = write(tmp_path, "setup.yaml", """
        task: train
        num_epochs: 5
        learning_rate: 0.001
        adam: true
        model: /tmp/net-model/network
        batch_size: 5000
        max_seqs: 40
        chunking: "200:100"
        log_verbosity: 4
        extern_data: {data: {dim: 9}, classes: {dim: 2, sparse: true}}
        learning_rate_control: null
        """)
    lines = write(tmp_path, "setup.cfg", """
        # a line-based config
        task train
        num_epochs 5
        learning_rate 0.001
        adam true

        model /tmp/net-model/network
        batch_size 5000
        max_seqs 40
        chunking 200:100
        log_verbosity 4
        extern_data {"data": {"dim": 9}, "classes": {"dim": 2, "sparse": true}}
        learning_rate_control None
        """)
    return {"python": python, "json": json_path, "yaml": yaml_path, "lines": lines}


@pytest.mark.parametrize("fmt", ["python", "json", "yaml", "lines"])
def test_config_same_values_in_every_format(tmp_path, fmt):
    config = Config()
    config.load_file(four_formats(tmp_path)[fmt])
    for key, value in EXPECTED.items():
        assert config.typed_value(key) == value, key
    assert config.int("num_epochs") == 5
    assert config.float("learning_rate") == 0.001
    assert config.bool("adam") is True
    assert config.value("chunking") == "200:100"
    assert config.value("learning_rate_control", "constant") == "constant"


def test_config_python_keeps_functions_classes_and_imports(tmp_path):
    path = write(tmp_path, "funcs.py", """
        import math
        from collections import OrderedDict
        _private = 3

        def custom_lr(epoch, **kwargs):
            return 0.1 * math.exp(-epoch)

        class MyDataset:
            dim = 7

        order = OrderedDict(a=1)
        scaled = [custom_lr(e) for e in range(2)]
        """)
    config = Config()
    config.load_file(path)
    assert config.typed_value("custom_lr")(1) == pytest.approx(0.1 * 2.718281828 ** -1)
    assert config.typed_value("MyDataset").dim == 7
    assert config.typed_value("scaled")[0] == pytest.approx(0.1)
    assert not config.has("math")  # modules are not config values
    assert not config.has("_private")


def test_config_override_wins_over_values_computed_from_it(tmp_path):
    path = write(tmp_path, "computed.config", """
        #!rnn.py
        num_epochs = 10
        learning_rates = [0.5] * num_epochs
        def epochs_left():
            return num_epochs
        """)
    config = Config()
    config.load_file(path)
    assert len(config.typed_value("learning_rates")) == 10
    config.parse_cmd_args(["++num_epochs", "2"])
    assert config.int("num_epochs") == 2
    assert config.typed_value("learning_rates") == [0.5, 0.5]
    assert config.typed_value("epochs_left")() == 2


def test_config_python_can_read_earlier_values_through_config_object(tmp_path):
    base = write(tmp_path, "base.json", '{"hidden": 64}')
    derived = write(tmp_path, "derived.py", """
        n_out = config.int("hidden", 1) * 2
        """)
    config = Config()
    config.parse_cmd_args([base, derived])
    assert config.int("n_out") == 128
    config.parse_cmd_args(["++hidden", "8"])
    assert config.int("n_out") == 16


def test_config_later_files_override_earlier(tmp_path):
    first = write(tmp_path, "a.cfg", "num_epochs 3\nbatch_size 100\n")
    second = write(tmp_path, "b.yaml", "num_epochs: 7\n")
    config = Config()
    files = config.parse_cmd_args([first, second, "++batch_size", "50"])
    assert files == [first, second]
    assert config.int("num_epochs") == 7
    assert config.int("batch_size") == 50
    assert "b.yaml" in config.origin("num_epochs")


@pytest.mark.parametrize("text, expected", [
    ("3", 3), ("-2", -2), ("0.5", 0.5), ("1e-3", 1e-3),
    ("True", True), ("False", False), ("true", True), ("false", False),
    ("None", None), ("[1, 2, 3]", [1, 2, 3]), ("{'a': 1}", {"a": 1}),
    ('{"a": true, "b": null}', {"a": True, "b": None}), ('["x", 2.5]', ["x", 2.5]),
    ("lstm", "lstm"), ("data:classes", "data:classes"), ("/tmp/model/net", "/tmp/model/net"), ("200:100", "200:100"),
])
def test_config_override_type_inference(text, expected):
    _, overrides = split_cmd_args(["++key", text])
    assert overrides["key"] == expected
    assert type(overrides["key"]) is type(expected)


@pytest.mark.parametrize("text, expected", [("1", True), ("0", False), ("true", True), ("False", False)])
def test_config_bool_accepts_words_and_digits(text, expected):
    config = Config()
    config.parse_cmd_args(["++flag", text])
    assert config.bool("flag") is expected


def test_config_rejects_double_dash_options_pointing_to_plus_plus():
    with pytest.raises(ConfigError, match=r"\+\+num_epochs VALUE"):
        Config().parse_cmd_args(["--num_epochs", "2"])


def test_config_plus_plus_without_value_is_an_error():
    with pytest.raises(ConfigError, match="needs a value"):
        Config().parse_cmd_args(["++num_epochs"])


def test_config_wrong_type_names_key_type_and_file(tmp_path):
    path = write(tmp_path, "bad.cfg", "batch_size 5k\nadam maybe\n")
    config = Config()
    config.load_file(path)
    with pytest.raises(ConfigTypeError, match=r'"batch_size": expected an int, got \'5k\' \(from config file .*bad.cfg'):
        config.int("batch_size")
    with pytest.raises(ConfigTypeError, match=r'"adam": expected a bool'):
        config.bool("adam")
    config.parse_cmd_args(["++learning_rate", "fast"])
    with pytest.raises(ConfigTypeError, match=r"expected a float, got 'fast' \(from \+\+learning_rate on the command line"):
        config.float("learning_rate")


def test_config_defaults_and_lists():
    config = Config({"layers": "a, b,c", "sizes": [1, 2], "single": 4, "nums": "3,4"})
    assert config.int("missing", 7) == 7 and config.value("missing") is None
    assert config.list("layers") == ["a", "b", "c"]
    assert config.list("sizes") == [1, 2] and config.list("single") == [4] and config.list("nope") == []
    assert config.int_list("nums") == [3, 4] and config.float_list("sizes") == [1.0, 2.0]
    assert config.value("sizes") == "1,2"
    config.set("single", 5)
    assert config.int("single") == 5 and config.has("single") and "single" in config


def test_config_python_syntax_error_reports_file_and_line(tmp_path):
    path = write(tmp_path, "broken.config", "#!rnn.py\nnum_epochs = 3\nnetwork = {\"a\": \n")
    with pytest.raises(ConfigError, match=r"broken.config', line \d+: syntax error"):
        Config().load_file(path)


def test_config_python_runtime_error_reports_line(tmp_path):
    path = write(tmp_path, "raises.py", "a = 1\nb = undefined_name + 1\n")
    with pytest.raises(ConfigError, match=r"raises.py', line 2: NameError"):
        Config().load_file(path)


@pytest.mark.parametrize("name, text, pattern", [
    ("bad.json", '{"a": 1,,}', r"bad.json', line 1: invalid JSON"),
    ("bad.yaml", "a: [1, 2\nb: 3\n", r"bad.yaml', line \d+: invalid YAML"),
    ("list.yaml", "- 1\n- 2\n", "YAML top level must be a mapping"),
    ("bad.cfg", "task train\n!!! nonsense\n", r"bad.cfg', line 2: expected 'key value'"),
])
def test_config_malformed_files_name_file_and_line(tmp_path, name, text, pattern):
    path = write(tmp_path, name, text)
    with pytest.raises(ConfigError, match=pattern):
        Config().load_file(path)


def test_config_missing_file_is_a_config_error(tmp_path):
    with pytest.raises(ConfigError, match="does not exist"):
        Config().load_file(str(tmp_path / "nope.config"))


def test_get_global_config_raises_creates_or_returns_the_set_one():
    from returnn.config import get_global_config, set_global_config
    set_global_config(None)
    with pytest.raises(ConfigError, match=r"get_global_config\(\): no config is being run"):
        get_global_config()
    assert get_global_config(raise_exception=False) is None
    assert isinstance(get_global_config(return_empty_if_none=True), Config)
    created = get_global_config(auto_create=True)
    assert get_global_config() is created
    set_global_config(None)
