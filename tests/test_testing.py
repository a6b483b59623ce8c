import numpy as np
import pytest

from returnn.testing import blstm_net_dict, build_network, ragged_batch, random_batch, rec_loop_dict, rec_unit_network

EXTERN = {"data": {"dim": 3}, "classes": {"dim": 5, "sparse": True}, "tm": {"shape": (None, 2), "time_dim_axis": 1}}


def test_random_batch_ragged_lengths_shared_and_padded():
    batch = random_batch(EXTERN, n_batch=4, max_time=6, seed=3, pad_value=-1.0)
    lens = batch.seq_lens("data")
    assert lens[0] == 6 and lens.max() == 6 and (lens >= 1).all()
    np.testing.assert_array_equal(batch.seq_lens("classes"), lens)
    mask = batch.mask("data")
    assert mask.shape == (4, 6) and mask.sum() == lens.sum()
    assert (batch["data"][~mask] == -1).all() and (batch["data"][mask] != -1).all()
    assert batch["classes"].dtype == np.int32 and batch["classes"][mask].max() < 5


def test_random_batch_own_max_time_per_key_and_seed():
    batch = random_batch(EXTERN, n_batch=2, max_time={"data": 8, "classes": 3, "tm": 4}, seed=1)
    assert batch["data"].shape == (2, 8, 3) and batch["classes"].shape == (2, 3) and batch["tm"].shape == (2, 4, 2)
    again = random_batch(EXTERN, n_batch=2, max_time={"data": 8, "classes": 3, "tm": 4}, seed=1)
    np.testing.assert_array_equal(batch["data"], again["data"])


def test_blstm_net_dict_is_returnn_docs_layout():
    net = blstm_net_dict(layers=2, n_out=8, dropout=0.1)
    assert net["lstm1_bw"] == {"class": "rec", "unit": "lstm", "n_out": 8, "direction": -1,
                               "from": ["lstm0_fw", "lstm0_bw"], "dropout": 0.1}
    assert net["lstm0_fw"]["from"] == "data" and net["output"] == {"class": "softmax", "loss": "ce",
                                                                   "from": ["lstm1_fw", "lstm1_bw"]}


def test_ragged_batch_zeros_after_each_length():
    batch = ragged_batch(np.random.default_rng(0), (3, 5, 2), [5, 1, 3], "x")
    np.testing.assert_array_equal(batch["x:seq_len"], [5, 1, 3])
    mask = np.arange(5)[None, :] < batch["x:seq_len"][:, None]
    assert not batch["x"][~mask].any() and batch["x"][mask].all()


def test_rec_loop_dict_and_the_unit_network():
    net_dict = rec_loop_dict({"output": {"class": "copy", "from": "base:x"}}, source=[], max_seq_len=2,
                             outside={"x": {"class": "reduce", "from": "data", "mode": "sum", "axes": "T"}})
    assert net_dict["output"] == {"class": "rec", "from": [], "max_seq_len": 2, "optimize_move_layers_out": False,
                                  "unit": {"output": {"class": "copy", "from": "base:x"}}} and "x" in net_dict
    net = build_network(net_dict, extern_data=EXTERN)
    assert rec_unit_network(net).templates["output"].describe() == "'output' [B,'data:feature'(3)]"
    with pytest.raises(ValueError, match="layer 'x' is not a rec layer with a unit dict"):
        rec_unit_network(net, "x")
