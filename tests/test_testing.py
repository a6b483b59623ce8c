import numpy as np

from returnn.testing import random_batch

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
