"""Checkpoints written by the real RETURNN (TF backend) load into our networks, names and layouts mapped."""

from __future__ import annotations

import os
import shutil

import h5py
import numpy as np
import pytest

from returnn.config import Config
from returnn.datasets import SimpleHDFWriter
from returnn.tf.checkpoint import CheckpointError, is_returnn_checkpoint_file, load_checkpoint
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
