"""``distributed``: the mirrored strategy trains as one device does; config errors name the key."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys

import numpy as np
import pytest

from returnn.config import Config
from returnn.errors import ConfigError
from returnn.lr_control import read_learning_rate_file
from returnn.tf import checkpoint as ckpt
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
        if key.startswith(":meta:epoch_train_time"):  # a wall-clock time
            continue
        assert result["scores_dist"][key] == pytest.approx(value, rel=1e-5), key
    assert result["eval_dist"] == pytest.approx(result["scores_dist"]["dev_score_output"], rel=1e-6)


def test_multi_worker_on_two_local_processes_matches_one_process(tmp_path):
    ports = [_free_port(), _free_port()]
    env = dict(os.environ, PYTHONPATH=ROOT + os.pathsep + os.environ.get("PYTHONPATH", ""))
    script = os.path.join(HERE, "distributed_workers.py")
    procs = [subprocess.Popen([sys.executable, script, str(tmp_path), name, *map(str, ports)], stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True, env=env) for name in ("0", "1", "single")]
    outputs = [proc.communicate(timeout=300) for proc in procs]
    for proc, (_, err) in zip(procs, outputs):
        assert proc.returncode == 0, err[-3000:]
    results = [json.loads(out.strip().splitlines()[-1]) for out, _ in outputs]
    assert results == [{"replicas": 2, "chief": True}, {"replicas": 2, "chief": False}, {"replicas": 1, "chief": True}]
    assert not os.path.exists(tmp_path / "1")  # only the chief writes checkpoints and the learning-rate file
    chief, single = (ckpt.read_checkpoint(str(tmp_path / name / "net.001")) for name in ("0", "single"))
    assert sorted(chief) == sorted(single)
    for name, value in single.items():
        np.testing.assert_allclose(chief[name], value, atol=1e-5, err_msg=name)
    scores = [{key: value for key, value in read_learning_rate_file(str(tmp_path / name / "lr"))[1].error.items()
               if not key.startswith(":meta:epoch_train_time")} for name in ("0", "single")]
    assert scores[0] == pytest.approx(scores[1], rel=1e-5)


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("localhost", 0))
        return sock.getsockname()[1]


@pytest.mark.parametrize("tf_config, match", [
    ("{cluster", r"TF_CONFIG \(for distributed multi_worker\): not JSON"),
    ('{"cluster": {}}', r'TF_CONFIG \(for distributed multi_worker\): expected \{"cluster": \{"worker"'),
    ('{"cluster": {"worker": ["localhost:1"]}, "task": {"type": "worker", "index": 1}}',
     r"TF_CONFIG: task worker 1 is not in the cluster"),
])
def test_multi_worker_names_a_bad_tf_config(monkeypatch, tf_config, match):
    monkeypatch.setenv("TF_CONFIG", tf_config)
    with pytest.raises(ConfigError, match=match):
        strategy_from_config(Config({"distributed": {"strategy": "multi_worker"}}))


def test_no_distributed_key_means_no_strategy():
    assert strategy_from_config(Config({})) is None


@pytest.mark.parametrize("value, match", [
    ({"strategy": "mirored"}, r'"distributed": unknown strategy \'mirored\'; known: mirrored'),
    ({"strategy": "parameter_server"}, r"unknown strategy 'parameter_server' \(ParameterServerStrategy is not supp"),
    ({"strategy": "multi_worker", "devices": []}, r"strategy 'multi_worker' has no option 'devices'; options: none"),
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
