"""Checkpoints: name-based, atomic, readable with TensorFlow's own reader."""

from __future__ import annotations

import os

import numpy as np
import pytest
import tensorflow as tf

from returnn.tf.checkpoint import (CheckpointDamagedError, CheckpointError, epoch_checkpoint_prefix, existing_epochs, load_checkpoint,
                                   read_checkpoint, remove_checkpoint, remove_stale_temp_files, save_checkpoint,
                                   variables_by_name)


def make_vars(seed: int = 0) -> dict[str, tf.Variable]:
    rng = np.random.RandomState(seed)
    with tf.name_scope("lstm0_fw"):
        w = tf.Variable(rng.randn(3, 4).astype(np.float32), name="W")
    with tf.name_scope("output"):
        b = tf.Variable(rng.randn(4).astype(np.float32), name="b")
    step = tf.Variable(7, dtype=tf.int64, name="global_train_step")
    return variables_by_name([w, b, step])


def test_checkpoint_round_trip_by_name(tmp_path):
    model = str(tmp_path / "net-model" / "network")
    source = make_vars(0)
    assert sorted(source) == ["global_train_step", "lstm0_fw/W", "output/b"]
    prefix = epoch_checkpoint_prefix(model, 3)
    assert prefix.endswith("network.003")
    save_checkpoint(prefix, source)
    assert sorted(os.listdir(tmp_path / "net-model")) == ["network.003.data-00000-of-00001", "network.003.index"]
    reader = tf.train.load_checkpoint(prefix)  # TensorFlow's own reader lists our names
    assert set(reader.get_variable_to_shape_map()) == set(source)
    target = make_vars(1)
    assert load_checkpoint(prefix, target) == list(target)
    for name in source:
        np.testing.assert_array_equal(target[name].numpy(), source[name].numpy())
    assert existing_epochs(model) == [3]


def test_checkpoint_load_subset_with_name_map_and_errors(tmp_path):
    prefix = str(tmp_path / "m.001")
    save_checkpoint(prefix, make_vars(0))
    other = {"enc/W": tf.Variable(np.zeros((3, 4), np.float32))}
    load_checkpoint(prefix, other, name_map={"enc/W": "lstm0_fw/W"})
    np.testing.assert_array_equal(other["enc/W"].numpy(), read_checkpoint(prefix)["lstm0_fw/W"])
    with pytest.raises(CheckpointError, match=r"lacks 1 variable\(s\) of the model: dec/W"):
        load_checkpoint(prefix, {"dec/W": tf.Variable(np.zeros((3, 4), np.float32))})
    assert load_checkpoint(prefix, {"dec/W": tf.Variable(np.zeros(1, np.float32))}, ignore_missing=True) == []
    with pytest.raises(CheckpointError, match=r"'output/b' has shape \(4,\), the model's 'output/b' has \(5,\)"):
        load_checkpoint(prefix, {"output/b": tf.Variable(np.zeros(5, np.float32))})
    with pytest.raises(CheckpointError, match="no complete checkpoint"):
        read_checkpoint(str(tmp_path / "m.002"))


def test_checkpoint_incomplete_files_are_not_epochs(tmp_path):
    model = str(tmp_path / "net")
    for epoch in (1, 2):
        save_checkpoint(epoch_checkpoint_prefix(model, epoch), make_vars(epoch))
    # a save killed after the data file moved but before the index did:
    os.rename(f"{model}.002.index", f"{model}.002.index.tmp-dead")
    open(f"{model}.003.tmp-0badc0de.data-00000-of-00001", "wb").close()
    assert existing_epochs(model) == [1]
    remove_stale_temp_files(model)
    assert not [f for f in os.listdir(tmp_path) if ".tmp-" in f]
    remove_checkpoint(epoch_checkpoint_prefix(model, 1))
    assert existing_epochs(model) == []


def test_checkpoint_duplicate_variable_names_rejected():
    a, b = tf.Variable(1.0, name="x"), tf.Variable(2.0, name="x")
    with pytest.raises(CheckpointError, match="share the name 'x'"):
        variables_by_name([a, b])


def truncate_data_file(prefix: str, keep_bytes: int = 20) -> None:
    """Cut ``prefix``'s data file short, as a full disk or an interrupted copy does; the index stays intact."""
    path = prefix + ".data-00000-of-00001"
    with open(path, "r+b") as f:
        f.truncate(keep_bytes)


def test_checkpoint_truncated_data_file_is_named_as_damaged(tmp_path):
    prefix = str(tmp_path / "net.004")
    save_checkpoint(prefix, make_vars(0))
    truncate_data_file(prefix)
    with pytest.raises(CheckpointDamagedError, match=rf"checkpoint '{prefix}' is damaged: reading variable '.*' failed "
                                                     r".*net\.004\.data-00000-of-00001\) is truncated or corrupt"):
        load_checkpoint(prefix, make_vars(1))
