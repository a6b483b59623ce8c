"""Unknown top-level keys: a warning with a did-you-mean for near misses only; the known-key list is complete."""

from __future__ import annotations

import logging
import os
import re

from returnn.config import Config
from returnn.config_keys import FRAMEWORK_KEYS, near_miss_keys, register_config_keys, warn_near_miss_keys
from returnn.testing import captured_log

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
_GETTER = re.compile(r"""\.(?:value|int|float|bool|is_true|list|int_list|float_list|typed_value|has)\(\s*["'](\w+)["']"""
                     r"""|config_value\(\s*\w+,\s*["'](\w+)["']""")


def test_near_misses_warn_once_each_with_did_you_mean():
    config = Config({"num_epoch": 3, "lerning_rate": 0.1, "batch_szie": 100, "learning_rate": 0.1})
    with captured_log(logging.WARNING) as records:
        warn_near_miss_keys(config)
    lines = [record.getMessage() for record in records]
    assert len(lines) == 3
    assert 'config key "num_epoch" (from Config.update) is not read by this framework' in lines[0]
    assert lines[0].endswith("did you mean 'num_epochs'?")
    assert "did you mean 'learning_rate'?" in lines[1] and "did you mean 'batch_size'?" in lines[2]


def test_python_config_helpers_are_not_flagged(tmp_path):
    cfg = tmp_path / "demo.config"
    cfg.write_text("#!rnn.py\nimport os\nimport numpy as np\ndemo_name = 'x'\nn_symbols = 8\nn = 3\nnum_layers = 2\n"
                   "def num_epoch(x):\n    return x\nclass Batch_Size:\n    pass\n_num_epoch = 1\ntask = 'nop'\n")
    config = Config()
    config.load_file(str(cfg))
    assert near_miss_keys(config) == {}


def test_keys_read_at_runtime_or_registered_count_as_known():
    config = Config({"my_batch_sizes": 1, "num_epochz": 2})
    assert set(near_miss_keys(config)) == {"my_batch_sizes", "num_epochz"}
    config.int("num_epochz")  # some code read it: it is a setting, not a typo
    register_config_keys(["my_batch_sizes"])  # read later by code outside returnn/
    assert near_miss_keys(config) == {}


def test_framework_keys_cover_every_key_returnn_reads_literally():
    read = set()
    for folder, _, files in os.walk(os.path.join(ROOT, "returnn")):
        for name in files:
            if name.endswith(".py"):
                with open(os.path.join(folder, name), encoding="utf-8") as f:
                    for match in _GETTER.finditer(f.read()):
                        read.add(match.group(1) or match.group(2))
    read -= {"class", "from", "dim", "data"}  # dict option names that share the getters' spelling
    assert read and sorted(read - FRAMEWORK_KEYS) == []
