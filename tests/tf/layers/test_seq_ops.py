import numpy as np
import tensorflow as tf

from returnn.tensor.dim import Dim
from returnn.tf.layers.seq_ops import ceildiv, gather_frames, gather_static, transpose_to


def test_gather_frames_per_sequence_with_fill():
    x = np.arange(2 * 4 * 3, dtype=np.float32).reshape(2, 4, 3)
    lens = np.array([4, 2], np.int32)
    positions = np.array([[3, 0, -1], [1, 2, 0]], np.int32)
    y = gather_frames(tf.constant(x), tf.constant(lens), tf.constant(positions), fill=-7.0).numpy()
    np.testing.assert_array_equal(y[0], [x[0, 3], x[0, 0], np.full(3, -7.0)])
    np.testing.assert_array_equal(y[1], [x[1, 1], np.full(3, -7.0), x[1, 0]])  # position 2 >= length 2


def test_gather_frames_2d_positions_and_tensor_fill():
    x = np.random.default_rng(0).standard_normal((2, 5, 3)).astype(np.float32)
    positions = np.array([[[0, 1], [4, 5]], [[2, 3], [-1, 1]]], np.int32)
    fill = np.array([[[[10.0]]], [[[20.0]]]], np.float32)  # [B, 1, 1, 1]
    y = gather_frames(tf.constant(x), tf.constant([5, 5]), tf.constant(positions), fill=tf.constant(fill)).numpy()
    assert y.shape == (2, 2, 2, 3)
    np.testing.assert_array_equal(y[0, 1, 1], np.full(3, 10.0))
    np.testing.assert_array_equal(y[1, 1, 0], np.full(3, 20.0))
    np.testing.assert_array_equal(y[1, 0, 1], x[1, 3])


def test_transpose_to_and_gather_static_and_ceildiv():
    a, b, c = Dim(2, "a"), Dim(3, "b"), Dim(4, "c")
    x = np.arange(24).reshape(2, 3, 4)
    np.testing.assert_array_equal(transpose_to(tf.constant(x), [a, b, c], [c, a, b]).numpy(), x.transpose(2, 0, 1))
    np.testing.assert_array_equal(gather_static(tf.constant(x), 2, [3, 1]).numpy(), x[..., [3, 1]])
    assert ceildiv(7, 2) == 4 and ceildiv(6, 3) == 2
    np.testing.assert_array_equal(ceildiv(tf.constant([0, 1, 5]), 2).numpy(), [0, 1, 3])
