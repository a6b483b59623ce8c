"""The legacy network description (hidden_size, hidden_type, ...) as the net dict RETURNN builds from it."""

from __future__ import annotations

import pytest

from returnn.config import Config
from returnn.errors import ConfigError
from returnn.tf.legacy_network import legacy_net_dict, net_dict_from_config
from returnn.tf.network import Network

PRETRAIN_DEMO = """
num_inputs 9
num_outputs 2
hidden_size 10,10,10
hidden_type forward
activation sigmoid
bidirectional false
"""


def _text_config(tmp_path, text: str) -> Config:
    path = tmp_path / "legacy.config"
    path.write_text(text)
    config = Config()
    config.load_file(str(path))
    return config


def test_legacy_forward_chain_as_in_the_pretrain_demo(tmp_path):
    config = _text_config(tmp_path, PRETRAIN_DEMO)
    assert legacy_net_dict(config) == {
        "hidden_0": {"class": "forward", "n_out": 10, "activation": "sigmoid", "dropout": 0.0, "from": ["data"]},
        "hidden_1": {"class": "forward", "n_out": 10, "activation": "sigmoid", "dropout": 0.0, "from": ["hidden_0"]},
        "hidden_2": {"class": "forward", "n_out": 10, "activation": "sigmoid", "dropout": 0.0, "from": ["hidden_1"]},
        "output": {"class": "softmax", "loss": "ce", "dropout": 0.0, "from": ["hidden_2"]}}
    net = Network.from_config(config)
    assert list(net.get_params()) == ["hidden_0/W", "hidden_0/b", "hidden_1/W", "hidden_1/b", "hidden_2/W",
                                      "hidden_2/b", "output/W", "output/b"]
    assert net.templates["output"].dim == 2


def test_legacy_bidirectional_rec_layers_and_options():
    config = Config({"num_inputs": 3, "num_outputs": 4, "hidden_size": [5, 6], "hidden_type": ["rec", "forward"],
                     "hidden_name": ["lstm", "_"], "activation": ["tanh", "relu"], "dropout": [0.1, 0.2],
                     "L2_reg": 0.01, "loss": "ce"})
    net = legacy_net_dict(config)
    assert list(net) == ["lstm_fw", "hidden_1", "lstm_bw", "output"]
    assert net["lstm_bw"]["direction"] == -1 and "direction" not in net["lstm_fw"]
    # the non-recurrent layer keeps its name, so the backward chain's hidden_1 replaces the forward one (RETURNN)
    assert net["hidden_1"]["from"] == ["lstm_bw"] and net["output"]["from"] == ["hidden_1", "hidden_1"]
    assert net["output"]["dropout"] == 0.2 and net["hidden_1"]["dropout"] == 0.2 and net["lstm_fw"]["L2"] == 0.01


def test_legacy_description_errors():
    with pytest.raises(ConfigError, match=r'"network": missing.*legacy "hidden_size"'):
        net_dict_from_config(Config({"num_inputs": 3}))
    with pytest.raises(ConfigError, match=r'"activation": required with "hidden_size"'):
        net_dict_from_config(Config({"hidden_size": [3]}))
    with pytest.raises(ConfigError, match=r'"hidden_type": .*unknown layer class \'lstm_opt\''):
        net_dict_from_config(Config({"hidden_size": [3], "hidden_type": "lstm_opt", "activation": "tanh"}))
    assert net_dict_from_config(Config({"network": {"output": {"class": "copy"}}, "hidden_size": [3]})) == {
        "output": {"class": "copy"}}
