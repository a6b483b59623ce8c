"""Checkpoints written by the real RETURNN (TF backend) load into our networks, names and layouts mapped."""

from __future__ import annotations

import os
import shutil

import h5py
import numpy as np
import pytest

from returnn.config import Config
from returnn.datasets import SimpleHDFWriter
from returnn.tf.engine_tasks import run_forward

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
