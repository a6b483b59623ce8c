"""Updater: gradient clipping, noise, accumulation and weight decay around the optimizer."""

from __future__ import annotations

import numpy as np
import pytest
import tensorflow as tf

from returnn.config import Config
from returnn.errors import ConfigError
from returnn.tf.updater import Updater


def make(settings: dict, start=(1.0, 2.0)) -> tuple[tf.Variable, Updater]:
    var = tf.Variable(np.array(start, np.float32))
    return var, Updater(Config({"learning_rate": 0.1, **settings}), [var])


def test_updater_plain_sgd_step_and_global_norm():
    var, updater = make({})
    norm = updater.apply_gradients([tf.constant([3.0, 4.0])])
    assert norm.numpy() == pytest.approx(5.0)
    np.testing.assert_allclose(var.numpy(), [0.7, 1.6], rtol=1e-6)
    assert int(updater.global_train_step.numpy()) == 1


def test_updater_clip_global_norm_and_value():
    var, updater = make({"gradient_clip_global_norm": 1.0})
    updater.apply_gradients([tf.constant([3.0, 4.0])])
    np.testing.assert_allclose(var.numpy(), [1.0 - 0.1 * 0.6, 2.0 - 0.1 * 0.8], rtol=1e-6)
    var, updater = make({"gradient_clip": 1.0})
    updater.apply_gradients([tf.constant([3.0, -0.5])])
    np.testing.assert_allclose(var.numpy(), [0.9, 2.05], rtol=1e-6)


def test_updater_accumulation_equals_one_step_with_mean_gradient():
    grads = [tf.constant([1.0, -2.0]), tf.constant([3.0, 0.0]), tf.constant([-1.0, 1.0])]
    var_acc, acc = make({"accum_grad_multiple_step": 3, "adam": True})
    var_one, one = make({"adam": True})
    step = tf.function(acc.apply_gradients)
    for i, g in enumerate(grads):
        step([g])
        if i < 2:
            np.testing.assert_allclose(var_acc.numpy(), [1.0, 2.0])  # nothing applied yet
    one.apply_gradients([tf.add_n(grads) / 3.0])
    np.testing.assert_allclose(var_acc.numpy(), var_one.numpy(), rtol=1e-6)
    np.testing.assert_allclose(acc.accumulators[0].numpy(), [0.0, 0.0])


def test_updater_noise_and_weight_decay():
    tf.random.set_seed(1)
    var, updater = make({"gradient_noise": 0.5})
    updater.apply_gradients([tf.constant([0.0, 0.0])])
    assert not np.allclose(var.numpy(), [1.0, 2.0])
    var, updater = make({"weight_decay": 0.5})
    updater.apply_gradients([tf.constant([0.0, 0.0])])
    np.testing.assert_allclose(var.numpy(), [0.95, 1.9], rtol=1e-6)


def test_updater_learning_rate_variable_is_used():
    var, updater = make({})
    updater.set_learning_rate(1.0)
    updater.apply_gradients([tf.constant([1.0, 1.0])])
    np.testing.assert_allclose(var.numpy(), [0.0, 1.0])


@pytest.mark.parametrize("settings, key", [({"gradient_clip": -1.0}, "gradient_clip"),
                                           ({"accum_grad_multiple_step": 0}, "accum_grad_multiple_step")])
def test_updater_rejects_bad_values(settings, key):
    with pytest.raises(ConfigError, match=key):
        make(settings)


def test_updater_clips_after_adding_noise_as_returnn():
    tf.random.set_seed(2)
    var, updater = make({"gradient_noise": 100.0, "gradient_clip": 1.0})
    updater.apply_gradients([tf.constant([0.0, 0.0])])
    step = np.abs(var.numpy() - [1.0, 2.0])
    assert np.all(step > 0.05) and np.all(step <= 0.1 + 1e-6)  # noise of ~100 clipped to 1, times lr 0.1
    var, updater = make({"gradient_noise": 100.0, "gradient_clip_global_norm": 1.0})
    updater.apply_gradients([tf.constant([0.0, 0.0])])
    assert np.linalg.norm(var.numpy() - [1.0, 2.0]) == pytest.approx(0.1, rel=1e-5)
