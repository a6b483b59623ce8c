"""returnn.tf.util.basic: RETURNN's tensor helpers, checked against NumPy."""

from __future__ import annotations

import numpy as np
import tensorflow as tf

from returnn.tf.util.basic import (Data, Dim, expand_dims_unbroadcast, expand_multiple_dims, get_shape, get_shape_dim,
                                   nd_indices, safe_exp, safe_log, sequence_mask_time_major, tile_transposed, where_bc)


def test_nd_indices_gather_per_batch_entry():
    params = np.arange(2 * 5).reshape(2, 5)  # [B, T]
    idx = np.array([[4, 0, 1], [2, 2, 3]])  # [B, n]
    got = tf.gather_nd(params, nd_indices(tf.constant(idx))).numpy()
    np.testing.assert_array_equal(got, np.take_along_axis(params, idx, axis=1))
    # time-major params [T, B], indices [n, B] with the batch on axis 1: pairs are [t, b]
    got_tm = tf.gather_nd(params.T, nd_indices(tf.constant(idx.T), batch_axis=1)).numpy()
    np.testing.assert_array_equal(got_tm, np.take_along_axis(params, idx, axis=1).T)


def test_safe_log_is_finite_at_zero_and_keeps_a_gradient():
    x = tf.constant([0.0, 1e-30, 0.5])
    with tf.GradientTape() as tape:
        tape.watch(x)
        y = safe_log(x)
    np.testing.assert_allclose(y.numpy(), np.log([1e-20, 1e-20, 0.5]), rtol=1e-5)
    grad = tape.gradient(y, x).numpy()
    assert np.all(np.isfinite(grad)) and grad[0] > 0 and np.isclose(grad[2], 2.0)


def test_safe_exp_stays_finite_and_positive():
    y = safe_exp(tf.constant([-1000.0, 0.0, 1000.0])).numpy()
    assert np.all(np.isfinite(y)) and y[0] > 0 and y[1] == 1.0


def test_expand_and_tile_helpers_match_numpy():
    x = np.array([[1, 2], [3, 4]])
    np.testing.assert_array_equal(expand_dims_unbroadcast(x, 1, 3).numpy(), np.repeat(x[:, None], 3, axis=1))
    np.testing.assert_array_equal(expand_dims_unbroadcast(x, -1, 2).numpy(), np.repeat(x[..., None], 2, axis=-1))
    assert expand_multiple_dims(x, [0, 3]).shape == (1, 2, 2, 1)
    np.testing.assert_array_equal(tile_transposed(x, 0, 2).numpy(), np.repeat(x, 2, axis=0))


def test_where_bc_broadcasts_all_arguments():
    cond = np.array([[True], [False]])  # [2, 1]
    got = where_bc(cond, np.array([1.0, 2.0, 3.0]), 0.0).numpy()
    np.testing.assert_array_equal(got, np.where(cond, [1.0, 2.0, 3.0], 0.0))
    masked = where_bc(cond, -1.0, tf.ones([2, 3]))  # RETURNN configs mask with a Python number
    assert masked.dtype == tf.float32
    np.testing.assert_array_equal(masked.numpy(), np.where(cond, -1.0, np.ones([2, 3])))


def test_shape_helpers_give_ints_when_static_and_tensors_when_not():
    assert get_shape(tf.zeros([2, 3])) == [2, 3]

    @tf.function(input_signature=[tf.TensorSpec([None, 3])], autograph=False)
    def dims(x):
        assert get_shape_dim(x, 1) == 3 and isinstance(get_shape_dim(x, 0), tf.Tensor)
        return get_shape_dim(x, 0)

    assert int(dims(tf.zeros([5, 3]))) == 5
    np.testing.assert_array_equal(sequence_mask_time_major([1, 3]).numpy(), [[True, True], [False, True], [False, True]])


def test_tf_util_basic_reexports_the_template_classes():
    from returnn.tensor import Data as OurData, Dim as OurDim
    assert Data is OurData and Dim is OurDim
