"""tools/export_model.py runs task export; tools/benchmark_export.py prints the figures of both signatures."""

from __future__ import annotations

import json

import tensorflow as tf

from returnn.config import Config
from returnn.testing import blstm_net_dict
from returnn.tf.engine import Engine


def test_export_model_tool_writes_the_savedmodel_of_the_given_epoch(tool, tmp_path):
    config_file = tmp_path / "am.config"
    config = {"extern_data": {"data": {"dim": 3}, "classes": {"dim": 2, "sparse": True}},
              "network": blstm_net_dict(layers=1, n_out=4, unit="standardlstm"), "model": str(tmp_path / "am")}
    config_file.write_text(json.dumps(config))
    Engine(Config(config)).save_model(2)
    assert tool("export_model").main([str(config_file), "--export-dir", str(tmp_path / "out"), "--epoch", "2"]) == 0
    signature = tf.saved_model.load(str(tmp_path / "out")).signatures["serving_default"]
    assert sorted(signature.structured_input_signature[1]) == ["data", "data_seq_len"]
    assert tool("export_model").main([str(config_file), "--export-dir", str(tmp_path / "out"), "--epoch", "3"]) == 1


def test_benchmark_export_prints_ours_and_exported_for_both_signatures(tool, capsys):
    assert tool("benchmark_export").main(["--layers", "1", "--n-out", "8", "--n-in", "3", "--time", "5", "--batch", "2",
                                          "--vocab", "5", "--beam", "2", "--out-time", "3", "--repeats", "1"]) == 0
    lines = [line.split() for line in capsys.readouterr().out.strip().splitlines()[1:]]
    assert [line[:2] for line in lines] == [["blstm", "ours"], ["blstm", "exported"],
                                             ["attention", "ours"], ["attention", "exported"]]
    assert all(float(line[3]) > 0 and float(line[5]) > 0 for line in lines)
