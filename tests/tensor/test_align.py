import numpy as np
import pytest
import tensorflow as tf

from returnn.errors import LayerConfigError
from returnn.tensor.align import aligned_tensor, common_dims, concat_features, concat_features_template
from returnn.tensor.data import Data
from returnn.tensor.dim import Dim, batch_dim, feature_dim

TIME = Dim(None, "time")


def test_common_dims_broadcasts_and_matches_static_dims():
    btf = Data("a", (batch_dim, TIME, feature_dim(3, "fa")))
    f = Data("b", (feature_dim(3, "fb"),))
    bt = Data("c", (TIME, batch_dim))
    assert common_dims([f, btf, bt]) == btf.dims


def test_common_dims_mismatch_names_both_dims():
    a = Data("a", (batch_dim, TIME, feature_dim(3, "a:feature")))
    b = Data("b", (batch_dim, TIME, feature_dim(4, "b:feature")))
    with pytest.raises(LayerConfigError, match=r"'a:feature'\(3\) of 'a' vs 'b:feature'\(4\) of 'b'"):
        common_dims([a, b])
    other_time = Data("c", (batch_dim, Dim(None, "other-time"), feature_dim(3, "c")))
    with pytest.raises(LayerConfigError, match=r"'time' of 'a' vs 'other-time' of 'c'"):
        common_dims([a, other_time])


def test_aligned_tensor_transposes_and_expands():
    feat = feature_dim(2, "f")
    tb = Data("x", (TIME, batch_dim)).with_tensor(np.arange(6, dtype=np.float32).reshape(3, 2))
    out = aligned_tensor(tb, (batch_dim, TIME, feat)).numpy()
    assert out.shape == (2, 3, 1)
    np.testing.assert_array_equal(out[..., 0], np.arange(6).reshape(3, 2).T)


def test_concat_features_reorders_second_source():
    fa, fb = feature_dim(2, "fa"), feature_dim(3, "fb")
    a = Data("a", (batch_dim, TIME, fa)).with_tensor(tf.ones([2, 4, 2]))
    b = Data("b", (TIME, batch_dim, fb)).with_tensor(tf.zeros([4, 2, 3]), dyn_sizes={TIME: tf.constant([4, 2])})
    template = concat_features_template([a, b], name="cat")
    assert template.dim == 5 and template.dims[:2] == (batch_dim, TIME)
    out = concat_features([a, b], template)
    assert out.numpy().shape == (2, 4, 5) and out.numpy()[..., :2].min() == 1 and out.numpy()[..., 2:].max() == 0
    np.testing.assert_array_equal(out.seq_lens.numpy(), [4, 2])


def test_concat_features_needs_dense_features():
    sparse = Data("s", (batch_dim, TIME), dtype="int32", sparse_dim=feature_dim(5, "v"))
    dense = Data("d", (batch_dim, TIME, feature_dim(2, "f")))
    with pytest.raises(LayerConfigError, match="cannot concatenate 's'"):
        concat_features_template([dense, sparse], name="x")
