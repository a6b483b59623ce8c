"""Every ``demos/*.config`` runs for a few epochs in a fresh directory, writes only below it (``out/<demo>/``),
and its dev score improves from the first to the last epoch (read from its learning-rate file); the HDF
workflow script runs end to end. The full-length results are measured in each config's header."""

from __future__ import annotations

import glob
import os
import re
import subprocess

import pytest

from returnn.__main__ import main
from returnn.lr_control import read_learning_rate_file

DEMOS = os.path.join(os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))), "demos")

# epochs per demo: enough for a clear gain of the dev score, few enough for the whole run to stay short;
# demos that take more than a few seconds even so are marked slow
EPOCHS = {
    "demo-tf-lstm.12ax.config": 2,
    "demo-tf-standardlstm.12ax.config": 2,
    "demo-tf-chunking-blstm.12ax.config": 2,
    "demo-tf-pretrain.12ax.config": 3,
    "demo-tf-lstm-lm.config": 2,
    "demo-tf-ctc.synthetic-speech.config": 3,
    "demo-tf-enc-dec.number-base.config": 3,
    "demo-tf-transformer.translation.config": 2,
}
# trained longer, with their dev error checked against a bound, in test_rec_demos.py
COVERED_ELSEWHERE = {"demo-tf-attention.reverse.config", "demo-tf-transformer-decoder.config"}
SLOW = {"demo-tf-ctc.synthetic-speech.config", "demo-tf-enc-dec.number-base.config",
        "demo-tf-transformer.translation.config"}
CONFIGS = sorted(os.path.basename(path) for path in glob.glob(os.path.join(DEMOS, "*.config")))


def test_every_demo_config_has_a_test_budget():
    assert set(CONFIGS) == set(EPOCHS) | COVERED_ELSEWHERE, "give each demos/*.config its epochs in EPOCHS"


@pytest.mark.parametrize("config", [pytest.param(c, marks=pytest.mark.slow) if c in SLOW else c for c in EPOCHS])
def test_demo_runs_in_its_directory_and_its_dev_score_improves(config, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    epochs = EPOCHS[config]
    assert main([os.path.join(DEMOS, config), "++num_epochs", str(epochs), "++log_verbosity", "2"]) == 0
    demo = os.path.splitext(config)[0]
    assert os.listdir(tmp_path) == ["out"] and os.listdir(tmp_path / "out") == [demo]
    scores = read_learning_rate_file(str(tmp_path / "out" / demo / "learning_rates"))
    assert sorted(scores) == list(range(1, epochs + 1))
    first, last = scores[1].error["dev_score"], scores[epochs].error["dev_score"]
    assert last < 0.9 * first, f"{config}: dev score {first} after epoch 1, {last} after epoch {epochs}"


def _run_script(tmp_path, name: str, *args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"}
    proc = subprocess.run(["bash", os.path.join(DEMOS, name), *args], cwd=tmp_path, env=env, capture_output=True,
                          text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    assert os.listdir(tmp_path) == ["out"]  # nothing written outside the run directory's out/
    return proc


@pytest.mark.slow
def test_hdf_workflow_script_reads_back_its_forward_output(tmp_path):
    """dump -> train 1 epoch from HDF -> forward to HDF -> read back (about 20 s: three processes start TF)."""
    proc = _run_script(tmp_path, "hdf-workflow.sh", "1")
    assert "read back 100 sequences of posteriors by tag" in proc.stdout
    assert sorted(os.listdir(tmp_path / "out" / "hdf-workflow"))[:3] == ["dev.hdf", "forward.dev.hdf", "learning_rates"]


@pytest.mark.slow
def test_export_serve_script_serves_the_trained_model_without_our_package(tmp_path):
    """train 3 epochs -> export -> a plain TensorFlow script classifies the dev set (about 12 s)."""
    proc = _run_script(tmp_path, "export-serve.sh", "3")
    served = re.search(r"served 100 sequences: (\d+)/(\d+) frames wrong", proc.stdout)
    assert served and int(served.group(1)) / int(served.group(2)) < 0.05
    assert os.path.isdir(tmp_path / "out" / "export-serve" / "exported" / "native_ops")


@pytest.mark.slow
def test_distributed_script_trains_with_two_workers(tmp_path):
    """two local worker processes, 2 epochs (about 7 s)."""
    _run_script(tmp_path, "distributed-12ax.sh", "2")
    out = tmp_path / "out" / "distributed-12ax"
    scores = read_learning_rate_file(str(out / "learning_rates"))
    assert sorted(scores) == [1, 2] and scores[2].error["dev_score"] < scores[1].error["dev_score"]
    assert (out / "worker0.log").exists() and (out / "worker1.log").exists()
