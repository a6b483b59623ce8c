"""Task runners: which model eval/forward load, and their errors."""

from __future__ import annotations

import pytest

from returnn.config import Config
from returnn.errors import ConfigError
from returnn.tasks import run_task
from returnn.tf.engine import Engine
from returnn.tf.engine_tasks import load_for_inference, run_eval, run_train

from test_engine import tiny_config


def test_engine_tasks_load_epoch_choice_and_errors(tmp_path):
    run_train(Config(tiny_config(tmp_path, num_epochs=2)))
    assert load_for_inference(Engine(Config(tiny_config(tmp_path)))) == 2
    assert load_for_inference(Engine(Config(tiny_config(tmp_path, load_epoch=1)))) == 1
    with pytest.raises(ConfigError, match=r"load_epoch 7 is not among them"):
        load_for_inference(Engine(Config(tiny_config(tmp_path, load_epoch=7))))
    with pytest.raises(ConfigError, match='task eval needs a dataset'):
        run_eval(Config(tiny_config(tmp_path, task="eval", dev=None)))
    with pytest.raises(ConfigError, match='"eval_datasets" names \'devtrain\''):
        run_eval(Config(tiny_config(tmp_path, task="eval", eval_datasets=["devtrain"])))


def test_engine_tasks_search_says_what_it_needs(tmp_path):
    run_train(Config(tiny_config(tmp_path, num_epochs=1)))
    with pytest.raises(ConfigError, match=r'"search_output_layer": layer \'output\' gives .*expected sparse labels'):
        run_task(Config(tiny_config(tmp_path, task="search", search_data="dev")))


def test_engine_tasks_train_without_model_or_network_is_clear(tmp_path):
    with pytest.raises(ConfigError, match='"model" is missing'):
        run_train(Config({**tiny_config(tmp_path), "model": None}))
    with pytest.raises(ConfigError, match='"network": missing'):
        run_train(Config({**tiny_config(tmp_path), "network": None}))
