"""Task forward: a layer's output per sequence into a RETURNN HDF file."""

from __future__ import annotations

import numpy as np
import pytest

from returnn.config import Config
from returnn.datasets import init_dataset
from returnn.errors import ConfigError
from returnn.log import logger
from returnn.tf.engine import Engine
from returnn.tf.engine_tasks import run_forward, run_train

from test_engine import tiny_config


def test_forward_writes_hdf_that_reads_back(tmp_path):
    run_train(Config(tiny_config(tmp_path, num_epochs=1)))
    out = str(tmp_path / "fwd.hdf")
    eval_data = {"class": "Task12AXDataset", "num_seqs": 7, "fixed_random_seed": 5}
    run_forward(Config(tiny_config(tmp_path, task="forward", eval=eval_data, output_file=out)))
    written = init_dataset(out)
    source = init_dataset(eval_data)
    written.init_seq_order(1)
    source.init_seq_order(1)
    assert written.num_seqs == 7 and written.get_data_dim("data") == 2
    written.load_seqs(0, 7)
    source.load_seqs(0, 7)
    source_lens = {source.get_tag(i): len(source.get_data(i, "data")) for i in range(7)}
    assert sorted(written.get_tag(i) for i in range(7)) == sorted(source_lens)
    for i in range(7):
        probs = written.get_data(i, "data")
        assert probs.shape == (source_lens[written.get_tag(i)], 2)
        np.testing.assert_allclose(probs.sum(axis=-1), 1.0, rtol=1e-5)


def test_forward_unknown_layer_and_missing_model_are_config_errors(tmp_path):
    with pytest.raises(ConfigError, match="no model to load.*load_epoch 1 is not among them"):
        run_forward(Config(tiny_config(tmp_path, task="forward", eval=tiny_config(tmp_path)["dev"], load_epoch=1,
                                       output_file=str(tmp_path / "x.hdf"))))
    run_train(Config(tiny_config(tmp_path, num_epochs=1)))
    with pytest.raises(ConfigError, match="forward_output_layer.*no layer 'outptu'"):
        run_forward(Config(tiny_config(tmp_path, task="forward", eval=tiny_config(tmp_path)["dev"],
                                       forward_output_layer="outptu", output_file=str(tmp_path / "x.hdf"))))
    assert not (tmp_path / "x.hdf").exists()


def _forward_values(path: str) -> dict[str, np.ndarray]:
    written = init_dataset(path)
    written.init_seq_order(1)
    written.load_seqs(0, written.num_seqs)
    return {written.get_tag(i): written.get_data(i, "data") for i in range(written.num_seqs)}


def test_forward_without_a_model_uses_fresh_params_and_warns(tmp_path, caplog):
    eval_data = {"class": "Task12AXDataset", "num_seqs": 5, "fixed_random_seed": 5}
    fresh, saved = str(tmp_path / "fresh.hdf"), str(tmp_path / "saved.hdf")
    logger.addHandler(caplog.handler)
    try:
        run_forward(Config(tiny_config(tmp_path, task="forward", eval=eval_data, output_file=fresh)))
    finally:
        logger.removeHandler(caplog.handler)
    assert "no model to load" in caplog.text and "freshly initialized params" in caplog.text
    # the fresh params come from random_seed: a checkpoint of a fresh Engine gives the same outputs
    Engine(Config(tiny_config(tmp_path))).save_model(1)
    run_forward(Config(tiny_config(tmp_path, task="forward", eval=eval_data, output_file=saved)))
    want, got = _forward_values(saved), _forward_values(fresh)
    assert sorted(got) == sorted(want) and len(got) == 5
    for tag, values in want.items():
        np.testing.assert_allclose(got[tag], values, rtol=1e-6)
