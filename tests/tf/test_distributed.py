"""``distributed``: the mirrored strategy trains as one device does; config errors name the key."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from returnn.config import Config
from returnn.errors import ConfigError
from returnn.tf.distributed import strategy_from_config
from returnn.tf.engine import Engine

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))


def test_mirrored_on_two_cpus_matches_one_device_and_its_checkpoint_loads_on_one(tmp_path):
    env = dict(os.environ, PYTHONPATH=ROOT + os.pathsep + os.environ.get("PYTHONPATH", ""))
    proc = subprocess.run([sys.executable, os.path.join(HERE, "distributed_two_cpus.py"), str(tmp_path)],
                          capture_output=True, text=True, env=env, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    assert result["replicas"] == 2
    assert result["spread"] == 0.0  # every replica made the same update to its copy
    assert result["names_dist"] == result["names_single"]  # the same checkpoint format
    assert result["init_diff"] == 0.0 and result["moved"] > 1e-3  # same start, and the 4 steps changed every param
    assert max(result["max_diff"].values()) < 1e-5
    assert result["scores_dist"].keys() == result["scores_single"].keys()
    for key, value in result["scores_single"].items():
        assert result["scores_dist"][key] == pytest.approx(value, rel=1e-5), key
    assert result["eval_dist"] == pytest.approx(result["scores_dist"]["dev_score_output"], rel=1e-6)


def test_no_distributed_key_means_no_strategy():
    assert strategy_from_config(Config({})) is None


@pytest.mark.parametrize("value, match", [
    ({"strategy": "mirored"}, r'"distributed": unknown strategy \'mirored\'; known: mirrored'),
    ({"strategy": "multi_worker"}, r"unknown strategy 'multi_worker' \(MultiWorkerMirroredStrategy is not implemented"),
    ({"devices": ["/cpu:0"]}, r'"distributed": expected a dict with "strategy"'),
    ({"strategy": "mirrored", "device": ["/cpu:0"]}, r"strategy 'mirrored' has no option 'device'; options: devices"),
    ({"strategy": "mirrored", "devices": "/cpu:0"}, r'"devices" must be a non-empty list'),
    ({"strategy": "mirrored", "devices": ["/gpu:7"]}, r"no device '/gpu:7' here; devices: .*CPU:0"),
    ({"strategy": "mirrored", "devices": ["/cpu:0", "CPU:0"]}, r'"devices" names a device twice'),
])
def test_distributed_config_errors_name_the_key(value, match):
    with pytest.raises(ConfigError, match=match):
        strategy_from_config(Config({"distributed": value}))


def test_use_horovod_points_to_distributed():
    with pytest.raises(ConfigError, match=r'"use_horovod": Horovod is not supported; use distributed = '):
        strategy_from_config(Config({"use_horovod": True}))


def test_jit_compile_with_distributed_is_refused(tmp_path):
    config = Config({"train": {"class": "Task12AXDataset", "num_seqs": 4}, "num_inputs": 9, "num_outputs": 2,
                     "network": {"output": {"class": "softmax", "loss": "ce", "from": "data"}},
                     "model": str(tmp_path / "net"), "jit_compile": True,
                     "distributed": {"strategy": "mirrored", "devices": ["/cpu:0"]}})
    with pytest.raises(ConfigError, match=r'"jit_compile" and "distributed": XLA compilation'):
        Engine(config).train()
