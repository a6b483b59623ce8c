"""tools/hdf_dump.py: from a dataset dict literal, from a config file, errors."""

from __future__ import annotations

import numpy as np

from returnn.datasets import init_dataset


def _same(a, b) -> None:
    a.init_seq_order(epoch=1)
    b.init_seq_order(epoch=1)
    assert a.num_seqs == b.num_seqs and a.num_outputs == b.num_outputs
    for i in range(a.num_seqs):
        assert a.get_tag(i) == b.get_tag(i)
        for key in a.get_data_keys():
            np.testing.assert_array_equal(a.get_data(i, key), b.get_data(i, key))


def test_hdf_dump_from_dict_literal(tool, tmp_path, capsys):
    spec = "{'class': 'Task12AXDataset', 'num_seqs': 12, 'fixed_random_seed': 1}"
    out = str(tmp_path / "a.hdf")
    assert tool("hdf_dump").main([spec, out]) == 0
    assert "wrote 12 sequences" in capsys.readouterr().out
    _same(init_dataset(eval(spec)), init_dataset(out))


def test_hdf_dump_from_config_file_with_range(tool, tmp_path):
    config = tmp_path / "setup.config"
    config.write_text("#!rnn.py\ndev = {'class': 'CopyTaskDataset', 'num_seqs': 10, 'fixed_random_seed': 3}\n")
    out = str(tmp_path / "dev.hdf")
    assert tool("hdf_dump").main([str(config), out, "--dataset", "dev", "--start_seq", "2", "--end_seq", "5"]) == 0
    ds = init_dataset(out)
    src = init_dataset({"class": "CopyTaskDataset", "num_seqs": 10, "fixed_random_seed": 3})
    src.init_seq_order(epoch=1)
    ds.init_seq_order(epoch=1)
    assert [ds.get_tag(i) for i in range(ds.num_seqs)] == ["seq-2", "seq-3", "seq-4", "seq-5"]  # inclusive, as RETURNN
    np.testing.assert_array_equal(ds.get_data(0, "data"), src.get_data(2, "data"))


def test_hdf_dump_errors_are_reported(tool, tmp_path, capsys):
    config = tmp_path / "setup.config"
    config.write_text("#!rnn.py\ntrain = {'class': 'CopyTaskDataset'}\n")
    assert tool("hdf_dump").main([str(config), str(tmp_path / "x.hdf"), "--dataset", "dev"]) == 1
    assert "no dataset under the key 'dev'" in capsys.readouterr().err
    assert tool("hdf_dump").main([str(tmp_path / "missing.hdf"), str(tmp_path / "y.hdf")]) == 1
    assert "does not exist" in capsys.readouterr().err
