"""Checkpoints written by the real RETURNN (TF backend) load into our networks, names and layouts mapped."""

from __future__ import annotations

import logging
import os
import shutil

import h5py
import numpy as np
import pytest
import tensorflow as tf

from returnn.config import Config
from returnn.datasets import SimpleHDFWriter
from returnn.log import logger
from returnn.tf.checkpoint import (CheckpointError, is_returnn_checkpoint_file, load_checkpoint, read_checkpoint,
                                   save_checkpoint)
from returnn.tf.engine import Engine
from returnn.tf.engine_tasks import run_forward
from returnn.testing import build_network
from returnn.tensor.extern_data import seq_len_key

FIXTURE = "/work/shared/fixtures/returnn-blstm"
DATA = os.path.join(os.path.dirname(__file__), "data")


def write_fixture_eval_hdf(path: str) -> None:
    """The 20 sequences RETURNN forwarded (its Task12AXDataset, fixed_random_seed 7, saved as symbol ids) as HDF."""
    saved = np.load(os.path.join(DATA, "returnn_blstm_eval_inputs.npz"))
    features = np.eye(9, dtype=np.float32)[saved["symbols"]]
    with SimpleHDFWriter(path, dim=9, ndim=2) as writer:
        for tag, start, n in zip(saved["tags"], np.cumsum(saved["lens"]) - saved["lens"], saved["lens"]):
            writer.insert_batch(features[None, start:start + n], [n], [str(tag)])


def read_hdf_by_tag(path: str) -> dict[str, np.ndarray]:
    """RETURNN-layout HDF (``inputs``, ``seqLengths``, ``seqTags``) -> {tag: [T, dim]}."""
    with h5py.File(path, "r") as f:
        inputs, lens = f["inputs"][...], f["seqLengths"][:, 0]
        tags = [t.decode() if isinstance(t, bytes) else str(t) for t in f["seqTags"][...]]
    starts = np.concatenate([[0], np.cumsum(lens)[:-1]])
    return {tag: inputs[start:start + n] for tag, start, n in zip(tags, starts, lens)}


@pytest.mark.skipif(not os.path.isdir(FIXTURE), reason="fixture checkpoint of the real RETURNN not present")
def test_returnn_blstm_checkpoint_forwards_as_returnn_did(tmp_path):
    shutil.copy(f"{FIXTURE}/returnn-blstm.config", tmp_path / "returnn-blstm.config")
    config = Config()
    config.load_file(str(tmp_path / "returnn-blstm.config"))
    config.load_file(f"{FIXTURE}/forward.config")
    # our Task12AXDataset draws other sequences than RETURNN's: feed RETURNN's as an HDF file
    write_fixture_eval_hdf(str(tmp_path / "eval.hdf"))
    config.update({"model": f"{FIXTURE}/model/net", "output_file": str(tmp_path / "fwd-output.hdf"), "log": None,
                   "eval": {"class": "HDFDataset", "files": [str(tmp_path / "eval.hdf")]}})
    run_forward(config)
    want, got = read_hdf_by_tag(f"{FIXTURE}/fwd-output.hdf"), read_hdf_by_tag(str(tmp_path / "fwd-output.hdf"))
    assert sorted(got) == sorted(want) and len(want) == 20
    for tag, probs in want.items():
        assert got[tag].shape == probs.shape, tag
        np.testing.assert_allclose(got[tag], probs, atol=1e-5, err_msg=tag)


def test_returnn_tf_cell_units_and_subnetwork_load_and_agree(tmp_path):
    """A checkpoint the real RETURNN wrote (random params) for standardlstm, basiclstm (backwards), gru, basicrnn,
    an rnn_cell in a rec subnetwork, a conv without bias (behavior_version 0) and layer_norm; its forward output."""
    net_dict = {
        "in": {"class": "linear", "activation": "tanh", "n_out": 8, "from": "conv"},
        "conv": {"class": "conv", "filter_size": (3,), "padding": "same", "n_out": 5, "from": "data"},
        "ln": {"class": "layer_norm", "from": "in"},
        "slstm": {"class": "rec", "unit": "standardlstm", "n_out": 4, "from": "ln"},
        "basic": {"class": "rec", "unit": "basiclstm", "n_out": 4, "direction": -1, "from": "ln"},
        "gru": {"class": "rec", "unit": "gru", "n_out": 4, "from": "ln"},
        "rnn": {"class": "rec", "unit": "basicrnn", "n_out": 4, "from": "ln"},
        "dec": {"class": "rec", "from": "ln", "unit": {
            "s": {"class": "rnn_cell", "unit": "standardlstm", "n_out": 4, "from": ["data:source", "prev:out"]},
            "out": {"class": "linear", "activation": "tanh", "n_out": 3, "from": ["s"]},
            "output": {"class": "copy", "from": "out"}}},
        "output": {"class": "softmax", "n_out": 2, "from": ["dec", "slstm", "gru", "rnn", "basic"]},
    }
    net = build_network(net_dict, extern_data={"data": {"dim": 9}})
    prefix = os.path.join(DATA, "returnn_cells", "model.001")
    assert is_returnn_checkpoint_file(prefix)
    loaded = load_checkpoint(prefix, net.get_params())
    assert "conv/bias" in loaded and not net.layers["conv"].b.numpy().any()  # RETURNN's conv had none
    ref = np.load(os.path.join(DATA, "returnn_cells", "forward.npz"))
    out = net({"data": ref["x"], seq_len_key("data"): ref["lens"]}, train=False)["output"]
    got = out.copy_as_batch_major().tensor.numpy() if hasattr(out, "copy_as_batch_major") else out.tensor.numpy()
    valid = np.arange(ref["x"].shape[1])[None, :] < ref["lens"][:, None]
    np.testing.assert_allclose(got[valid], ref["y"][valid], atol=1e-5)


def test_returnn_checkpoint_missing_variable_error_suggests_names():
    net = build_network({"output": {"class": "copy", "from": "dec"},
                         "dec": {"class": "linear", "n_out": 3, "from": "data"}}, extern_data={"data": {"dim": 9}})
    with pytest.raises(CheckpointError, match=r"RETURNN checkpoint .* lacks 2 variable\(s\) of the model: "
                                              r"dec/W \(did you mean 'dec/rec/out/W'\?\), dec/b .*; it has: "):
        load_checkpoint(os.path.join(DATA, "returnn_cells", "model.001"), net.get_params())


def fixture_train_config(tmp_path, **overrides) -> Config:
    """RETURNN's training config of the fixture, with a small train set and no dev set."""
    config = Config()
    config.load_file(f"{FIXTURE}/returnn-blstm.config")
    config.update({"train": {"class": "Task12AXDataset", "num_seqs": 8}, "dev": None, "log": None,
                   "learning_rate_file": str(tmp_path / "lr.txt"), "tensorboard": False, **overrides})
    return config


@pytest.mark.skipif(not os.path.isdir(FIXTURE), reason="fixture checkpoint of the real RETURNN not present")
def test_training_continues_from_returnn_checkpoint_with_fresh_optimizer(tmp_path, caplog, monkeypatch):
    os.makedirs(tmp_path / "model")
    for name in os.listdir(f"{FIXTURE}/model"):
        shutil.copy(f"{FIXTURE}/model/{name}", tmp_path / "model" / name)
    engine = Engine(fixture_train_config(tmp_path, model=str(tmp_path / "model" / "net"), num_epochs=3))
    monkeypatch.setattr(logger, "propagate", True)
    caplog.set_level(logging.INFO, logger="returnn")
    engine.train()
    assert "written by RETURNN" in caplog.text and "optimizer state starts fresh" in caplog.text
    assert int(engine.updater.global_train_step.numpy()) > 20  # RETURNN's global_step was 20
    stored = read_checkpoint(str(tmp_path / "model" / "net.003"))
    assert "fw/W_re" in stored and "updater/global_train_step" in stored  # ours from now on


@pytest.mark.skipif(not os.path.isdir(FIXTURE), reason="fixture checkpoint of the real RETURNN not present")
@pytest.mark.parametrize("key", ["import_model_train_epoch1", "preload_from_files"])
def test_returnn_checkpoint_initializes_a_new_training(tmp_path, key):
    value = f"{FIXTURE}/model/net.002"
    if key == "preload_from_files":
        value = {"base": {"filename": value, "prefix": "enc_", "ignore_missing": True}}
    config = fixture_train_config(tmp_path, model=str(tmp_path / "net"), **{key: value})
    if key == "preload_from_files":  # the same layers under a prefix: "enc_fw" gets RETURNN's "fw/rec/W"
        net = dict(config.typed_value("network"))
        net["enc_fw"] = net.pop("fw")
        net["ln"] = dict(net["ln"], **{"from": ["enc_fw", "bw"]})
        config.update({"network": net})
    engine = Engine(config)
    engine.init_train()
    want = tf.train.load_checkpoint(f"{FIXTURE}/model/net.002").get_tensor("fw/rec/W_re")
    params = engine.network.get_params()
    np.testing.assert_array_equal(params["enc_fw/W_re" if key == "preload_from_files" else "fw/W_re"].numpy(), want)


@pytest.mark.parametrize("prefix", ["output_output_output_", "", "v2_"])  # RETURNN's batch_norm param_version 0, 1, 2
def test_returnn_batch_norm_statistics_load_from_every_param_version(tmp_path, prefix):
    rng = np.random.default_rng(0)
    values = {stat: rng.standard_normal(5).astype(np.float32) for stat in ("mean", "variance", "gamma", "beta")}
    shape = (1, 1, 5) if prefix != "v2_" else (5,)  # versions 0 and 1 stored broadcastable shapes
    variables = {f"output/batch_norm/{prefix}{stat}": tf.Variable(v.reshape(shape)) for stat, v in values.items()}
    variables["global_step"] = tf.Variable(np.int64(7))
    save_checkpoint(str(tmp_path / "net.001"), variables)
    net = build_network({"output": {"class": "batch_norm", "from": "data"}}, extern_data={"data": {"dim": 5}})
    load_checkpoint(str(tmp_path / "net.001"), net.get_params())
    for stat, value in values.items():
        np.testing.assert_array_equal(net.get_params()[f"output/batch_norm/v2_{stat}"].numpy(), value)
