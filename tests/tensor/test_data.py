import numpy as np
import pytest
import tensorflow as tf

from returnn.errors import LayerConfigError
from returnn.tensor.data import Data
from returnn.tensor.dim import FEATURE, BeamBatchDim, Dim, batch_dim, feature_dim


def _btf(n_feat: int = 4) -> Data:
    return Data("x", (batch_dim, Dim(None, "time"), feature_dim(n_feat, "feat")))


def test_data_defaults_time_and_feature():
    data = _btf()
    assert (data.batch_dim_axis, data.time_dim_axis, data.feature_dim_axis) == (0, 1, 2)
    assert data.dim == 4 and not data.sparse
    assert data.batch_shape == (None, None, 4)


def test_data_sparse_has_no_feature_and_dim_is_vocab():
    vocab = Dim(10, "vocab", kind=FEATURE)
    data = Data("c", (batch_dim, Dim(None, "t")), dtype="int32", sparse_dim=vocab)
    assert data.feature_dim is None and data.dim == 10
    dense = data.with_feature_dim(feature_dim(3, "emb"))
    assert not dense.sparse and dense.dim == 3 and dense.dtype == "float32" and dense.feature_dim_axis == 2


def test_data_move_axis_keeps_time_and_feature_dims():
    x = np.arange(2 * 3 * 4, dtype=np.float32).reshape(2, 3, 4)
    data = _btf().with_tensor(x)
    tm = data.copy_as_time_major()
    assert tm.time_dim_axis == 0 and tm.batch_dim_axis == 1 and tm.feature_dim_axis == 2
    np.testing.assert_array_equal(tm.numpy(), x.transpose(1, 0, 2))
    fm = data.copy_move_axis(2, 1)
    assert fm.feature_dim_axis == 1 and fm.copy_with_feature_last().dims == data.dims


def test_data_sequence_mask_and_masked_tensor():
    data = _btf(2)
    time = data.time_dim
    data = data.with_tensor(tf.ones([2, 3, 2]), dyn_sizes={time: tf.constant([3, 1])})
    np.testing.assert_array_equal(data.sequence_mask().numpy(), [[True, True, True], [True, False, False]])
    masked = data.copy_as_time_major().masked_tensor().numpy()
    assert masked[:, 1].sum() == 2 and masked[:, 0].sum() == 6


def test_data_dyn_size_defaults_to_full_length():
    data = _btf().with_tensor(tf.zeros([2, 5, 4]))
    np.testing.assert_array_equal(data.seq_lens, None)
    np.testing.assert_array_equal(data.get_dyn_size(data.time_dim).numpy(), [5, 5])


def test_data_with_tensor_checks_rank():
    with pytest.raises(ValueError, match="rank 2"):
        _btf().with_tensor(tf.zeros([2, 3]))


def test_data_replace_drops_logits_when_tensor_changes():
    data = _btf().with_tensor(tf.zeros([1, 2, 4])).replace(logits=tf.ones([1, 2, 4]))
    assert data.copy_transpose([1, 0, 2]).logits.shape == (2, 1, 4)
    assert data.replace(tensor=tf.zeros([1, 2, 4])).logits is None


def test_data_axis_names():
    extra = Dim(None, "frames")
    data = Data("x", (batch_dim, Dim(None, "time"), extra, feature_dim(3, "feat")))
    assert data.get_axis("B") == 0 and data.get_axis("T") == 1 and data.get_axis("F") == 3
    assert data.get_axes("spatial") == [1, 2]
    assert data.get_axis("S:1") == 2 and data.get_axis("stag:frames") == 2 and data.get_axis(extra) == 2
    assert data.get_axes("except_time") == [2, 3]
    assert data.get_axes("dynamic") == [1, 2] and data.get_axes("static") == [3]
    assert data.get_axis(-1) == 3 and data.get_axes(["T", "F"]) == [1, 3]


def test_data_axis_errors_name_the_data():
    data = Data("x", (batch_dim, feature_dim(3, "feat")))
    assert data.get_axes("T?") == []
    with pytest.raises(LayerConfigError, match="'x'.*has no time axis"):
        data.get_axis("T")
    with pytest.raises(LayerConfigError, match="'nope': unknown"):
        data.get_axis("nope")
    with pytest.raises(LayerConfigError, match="exactly one axis"):
        data.get_axis("*")


def test_padding_zeroed_skips_masking_until_the_tensor_or_sizes_change():
    time = Dim(None, "t")
    x = tf.ones([2, 3])
    data = Data("x", (batch_dim, time)).with_tensor(x, dyn_sizes={time: tf.constant([3, 1])})
    assert data.masked_tensor().numpy().tolist() == [[1, 1, 1], [1, 0, 0]]
    trusted = data.replace(padding_zeroed=True)
    assert trusted.masked_tensor() is x  # the caller said the padding is zero: no masking op
    assert trusted.copy_as_time_major().padding_zeroed
    assert not trusted.replace(tensor=x * 2).padding_zeroed
    assert not trusted.replace(dyn_sizes={time: tf.constant([2, 2])}).padding_zeroed


def test_beam_is_the_beam_search_of_the_batch_axis():
    beam = BeamBatchDim(batch_dim, 4, "output")
    time = Dim(None, "t")
    assert Data("x", (time, beam)).beam is beam
    assert Data("x", (batch_dim, time)).beam is None and Data("x", (time,)).beam is None
