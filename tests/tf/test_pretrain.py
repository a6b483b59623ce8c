"""Pretraining: layer-wise stages, custom construction, and the engine growing the network."""

from __future__ import annotations

import numpy as np
import pytest

from returnn.config import Config
from returnn.errors import ConfigError
from returnn.tf import checkpoint as ckpt
from returnn.tf.engine import Engine
from returnn.tf.pretrain import Pretrain, pretrain_from_config

NET = {
    "l0_fw": {"class": "linear", "activation": "tanh", "n_out": 8, "from": "data"},
    "l0_bw": {"class": "linear", "activation": "tanh", "n_out": 8, "from": "data"},
    "l1": {"class": "linear", "activation": "tanh", "n_out": 8, "from": ["l0_fw", "l0_bw"]},
    "l2": {"class": "linear", "activation": "tanh", "n_out": 8, "from": "l1"},
    "output": {"class": "softmax", "loss": "ce", "from": "l2"},
}


def test_pretrain_default_grows_one_depth_level_per_stage():
    pretrain = Pretrain(NET, repetitions=[1, 2])
    assert pretrain.num_pretrain_epochs == 3
    stage0, stage1 = pretrain.stages
    assert sorted(stage0) == ["l0_bw", "l0_fw", "output"] and stage0["output"]["from"] == ["l0_fw", "l0_bw"]
    assert sorted(stage1) == ["l0_bw", "l0_fw", "l1", "output"] and stage1["output"]["from"] == "l1"
    assert [sorted(pretrain.net_dict_for_epoch(e)) == sorted(NET) for e in (1, 2, 3, 4)] == [False, False, False, True]
    assert NET["output"]["from"] == "l2"  # the config's dict is untouched


def test_pretrain_custom_construction_and_config_forms():
    def construct(idx, net_dict):
        if idx == 2:
            return None
        net_dict["output"]["loss_scale"] = (idx + 1) / 2
        return net_dict

    pretrain = pretrain_from_config(Config({"pretrain": {"repetitions": 2, "construction_algo": construct}}), NET)
    assert pretrain.num_pretrain_epochs == 4
    assert pretrain.net_dict_for_epoch(3)["output"]["loss_scale"] == 1.0
    assert "loss_scale" not in pretrain.net_dict_for_epoch(5)["output"]
    assert pretrain_from_config(Config({}), NET) is None
    with pytest.raises(ConfigError, match='"pretrain": unknown option'):
        pretrain_from_config(Config({"pretrain": {"repetition": 2}}), NET)


def test_pretrain_engine_trains_small_net_first_then_carries_params(tmp_path):
    config = Config({
        "train": {"class": "Task12AXDataset", "num_seqs": 30, "fixed_random_seed": 2},
        "num_inputs": 9, "num_outputs": 2, "batch_size": 1000, "max_seqs": 10,
        "network": NET, "pretrain": "default", "adam": True, "learning_rate": 0.01,
        "model": str(tmp_path / "net"), "num_epochs": 3, "log_verbosity": 1,
    })
    Engine(config).train()
    first = ckpt.read_checkpoint(str(tmp_path / "net.001"))
    second = ckpt.read_checkpoint(str(tmp_path / "net.002"))
    final = ckpt.read_checkpoint(str(tmp_path / "net.003"))
    assert "l1/W" not in first and "l1/W" in second and "l2/W" not in second and "l2/W" in final
    engine = Engine(config)
    engine.use_net_dict(engine.net_dict_for_epoch(1))
    engine.network.load_params({k: v for k, v in first.items() if not k.startswith("updater/")})
    before = engine.network.get_params()["l0_fw/W"].numpy()
    engine.use_net_dict(engine.net_dict_for_epoch(2))
    np.testing.assert_array_equal(engine.network.get_params()["l0_fw/W"].numpy(), before)
