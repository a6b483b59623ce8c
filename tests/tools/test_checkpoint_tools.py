"""tools/avg_checkpoints.py and tools/print_checkpoint.py."""

from __future__ import annotations

import numpy as np
import tensorflow as tf

from returnn.tf.checkpoint import epoch_checkpoint_prefix, read_checkpoint, save_checkpoint

def write_epochs(model: str) -> None:
    for epoch, scale in ((1, 1.0), (2, 3.0)):
        save_checkpoint(epoch_checkpoint_prefix(model, epoch), {
            "out/W": tf.Variable(np.full((2, 2), scale, np.float32)),
            "updater/global_train_step": tf.Variable(np.int64(epoch * 10)),
            "updater/optimizer/out.W/m": tf.Variable(np.zeros((2, 2), np.float32)),
        })


def test_avg_checkpoints_means_floats_keeps_last_ints(tmp_path, capsys, tool):
    model = str(tmp_path / "net")
    write_epochs(model)
    out = str(tmp_path / "net.avg")
    assert tool("avg_checkpoints").main(["--model", model, "--epochs", "1", "2", "--out", out]) == 0
    result = read_checkpoint(out)
    np.testing.assert_array_equal(result["out/W"], np.full((2, 2), 2.0, np.float32))
    assert sorted(result) == ["out/W"]  # the params only, no training state
    assert "averaged 2 checkpoints, 1 variables" in capsys.readouterr().out
    assert tool("avg_checkpoints").main(["--model", model, "--epochs", "1", "2", "--out", out + "2",
                                         "--keep-optimizer"]) == 0
    full = read_checkpoint(out + "2")
    assert full["updater/global_train_step"] == 20 and "updater/optimizer/out.W/m" in full


def test_avg_checkpoints_missing_epoch_is_clear_error(tmp_path, capsys, tool):
    model = str(tmp_path / "net")
    write_epochs(model)
    assert tool("avg_checkpoints").main(["--model", model, "--epochs", "1", "5", "--out", str(tmp_path / "x")]) == 1
    assert "no complete checkpoint" in capsys.readouterr().err


def test_print_checkpoint_lists_names_shapes_stats(tmp_path, capsys, tool):
    model = str(tmp_path / "net")
    write_epochs(model)
    assert tool("print_checkpoint").main([epoch_checkpoint_prefix(model, 2), "--filter", "out/"]) == 0
    out = capsys.readouterr().out
    assert "out/W shape [2, 2] float32 mean 3" in out and "total: 4 values" in out
