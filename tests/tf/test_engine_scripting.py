"""RETURNN as a library (RETURNN's demos/demo-returnn-as-framework.py): Engine(config), init_train_from_config,
train, init_network_from_config, forward_to_hdf and search, as a script calls them."""

from __future__ import annotations

import ast
import os
import subprocess
import sys

import numpy as np
import pytest

import returnn
from returnn.config import Config
from returnn.datasets import init_dataset
from returnn.errors import ConfigError
from returnn.lr_control import read_learning_rate_file
from returnn.tf.engine import Engine
from returnn.tf.engine_tasks import run_search

from test_search_task import search_config

SCRIPT = '''
import sys
import returnn
from returnn.tf.engine import Engine
from returnn.datasets import init_dataset
from returnn.config import get_global_config
from returnn.util.basic import get_login_username
from returnn.util import better_exchook

print("RETURNN version:", returnn.__version__, returnn.__long_version__)
better_exchook.install()
out_dir = sys.argv[1]
config = get_global_config(auto_create=True)
config.update(dict(
    batching="random", batch_size=1000, max_seqs=10, chunking="0",
    network={"fw0": {"class": "rec", "unit": "lstm", "n_out": 8},
             "output": {"class": "softmax", "loss": "ce", "from": ["fw0"]}},
    adam=True, learning_rate=0.01, num_epochs=2,
    model="%s/%s/model" % (out_dir, get_login_username()),
    learning_rate_control="newbob_multi_epoch", newbob_multi_num_epochs=3, newbob_multi_update_interval=1,
    learning_rate_file="%s/newbob.data" % out_dir, log_verbosity=2,
))
engine = Engine(config)
train_data = init_dataset({"class": "Task12AXDataset", "num_seqs": 40, "name": "train"})
dev_data = init_dataset({"class": "Task12AXDataset", "num_seqs": 10, "name": "dev", "fixed_random_seed": 1})
engine.init_train_from_config(train_data=train_data, dev_data=dev_data)
engine.train()

engine = Engine(config)
engine.init_network_from_config(config)
print("forwarded", engine.forward_to_hdf(data=dev_data, output_file=out_dir + "/fwd.hdf"), "epoch", engine.epoch)
engine.finalize()
'''


def test_script_trains_and_forwards_like_returnn_demo(tmp_path):
    script = tmp_path / "demo.py"
    script.write_text(SCRIPT)
    env = {**os.environ, "PYTHONPATH": os.path.dirname(os.path.dirname(returnn.__file__)), "TF_CPP_MIN_LOG_LEVEL": "2"}
    proc = subprocess.run([sys.executable, str(script), str(tmp_path)], env=env, capture_output=True, text=True,
                          timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert f"RETURNN version: {returnn.__version__}" in proc.stdout
    assert "forwarded 10 epoch 2" in proc.stdout
    models = os.listdir(next(p for p in tmp_path.iterdir() if p.is_dir()))
    assert {"model.001.index", "model.002.index"} <= set(models)
    assert sorted(read_learning_rate_file(str(tmp_path / "newbob.data"))) == [1, 2]
    written = init_dataset(str(tmp_path / "fwd.hdf"))
    written.init_seq_order(1)
    written.load_seqs(0, written.num_seqs)
    assert written.num_seqs == 10 and written.get_data_dim("data") == 2
    np.testing.assert_allclose(written.get_data(0, "data").sum(-1), 1.0, rtol=1e-5)


def test_engine_search_api_matches_task_search(tmp_path):
    Engine(Config(search_config(tmp_path, task="train"))).save_model(1)
    by_task = tmp_path / "task.py"
    run_search(Config(search_config(tmp_path, search_output_file=str(by_task))))
    config = Config(search_config(tmp_path))
    engine = Engine(config)
    engine.init_network_from_config()
    by_api = tmp_path / "api.py"
    result = engine.search(init_dataset(config.typed_value("dev")), output_file=str(by_api))
    assert result["num_seqs"] == 11 and engine.epoch == 1
    # same hypotheses; scores agree up to float rounding (this dataset is not sorted by length, so other batches)
    want, got = ast.literal_eval(by_task.read_text()), ast.literal_eval(by_api.read_text())
    assert sorted(got) == sorted(want)
    for tag, hyps in want.items():
        assert [labels for _, labels in got[tag]] == [labels for _, labels in hyps]
        np.testing.assert_allclose([score for score, _ in got[tag]], [score for score, _ in hyps], rtol=1e-5)


def test_engine_api_errors_name_what_is_missing(tmp_path):
    config = Config({"network": {"output": {"class": "softmax", "loss": "ce", "from": "data"}}, "task": "forward"})
    engine = Engine(config)
    with pytest.raises(ConfigError, match=r'needs "extern_data".*init_train_from_config\(train_data=...\)'):
        engine.init_network_from_config()
    with pytest.raises(ConfigError, match="another config"):
        engine.init_train_from_config(Config())
