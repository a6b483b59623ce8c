"""Optimizers against NumPy references of their update rules."""

from __future__ import annotations

import numpy as np
import pytest
import tensorflow as tf

from returnn.config import Config
from returnn.errors import ConfigError
from returnn.tf.optimizers import Optimizer, canonical_kind, optimizer_from_config

GRADS = [np.array([0.5, -1.0, 2.0], np.float32), np.array([-0.25, 0.75, 0.1], np.float32), np.array([1.0, 1.0, -3.0], np.float32)]
START = np.array([1.0, -2.0, 0.5], np.float32)
LR = 0.1


def numpy_reference(kind: str, options: dict) -> np.ndarray:
    x = START.astype(np.float64).copy()
    m = np.zeros_like(x); v = np.zeros_like(x); acc = np.full_like(x, options.get("initial_accumulator_value", 0.1))
    acc_update = np.zeros_like(x)
    for t, g in enumerate(GRADS, start=1):
        g = g.astype(np.float64)
        if kind == "sgd":
            x -= LR * g
        elif kind == "momentum":
            m = options["momentum"] * m + g
            x -= LR * m
        elif kind in ("adam", "adamw"):
            if kind == "adamw":
                x -= LR * options["weight_decay"] * x
            b1, b2, eps = options["beta1"], options["beta2"], options["epsilon"]
            m = b1 * m + (1 - b1) * g
            v = b2 * v + (1 - b2) * g * g
            lr_t = LR * np.sqrt(1 - b2 ** t) / (1 - b1 ** t)
            x -= lr_t * m / (np.sqrt(v) + eps)
        elif kind == "adagrad":
            acc += g * g
            x -= LR * g / (np.sqrt(acc) + options["epsilon"])
        elif kind == "adadelta":
            rho, eps = options["rho"], options["epsilon"]
            acc = rho * (acc if t > 1 else 0.0) + (1 - rho) * g * g  # accumulators start at zero
            update = np.sqrt(acc_update + eps) / np.sqrt(acc + eps) * g
            acc_update = rho * acc_update + (1 - rho) * update * update
            x -= LR * update
        elif kind == "rmsprop":
            rho, mom, eps = options["decay"], options["momentum"], options["epsilon"]
            v = rho * v + (1 - rho) * g * g
            m = mom * m + LR * g / np.sqrt(v + eps)
            x -= m
    return x


@pytest.mark.parametrize("kind, options", [
    ("sgd", {}),
    ("momentum", {"momentum": 0.9}),
    ("adam", {"beta1": 0.9, "beta2": 0.999, "epsilon": 1e-8}),
    ("adamw", {"beta1": 0.8, "beta2": 0.99, "epsilon": 1e-8, "weight_decay": 0.05}),
    ("adagrad", {"initial_accumulator_value": 0.1, "epsilon": 1e-7}),
    ("adadelta", {"rho": 0.9, "epsilon": 1e-6}),
    ("rmsprop", {"decay": 0.9, "momentum": 0.5, "epsilon": 1e-6}),
])
def test_optimizer_matches_numpy_update_rule(kind, options):
    var = tf.Variable(START, name="w")
    opt = Optimizer(kind, [var], **options)

    @tf.function
    def step(g):
        opt.apply([g], tf.constant(LR))

    for g in GRADS:
        step(tf.constant(g))
    np.testing.assert_allclose(var.numpy(), numpy_reference(kind, options), rtol=1e-5, atol=1e-6)
    assert int(opt.iterations.numpy()) == 3


def test_optimizer_nadam_differs_from_adam_and_moves_downhill():
    results = {}
    for kind in ("adam", "nadam"):
        var = tf.Variable(START)
        opt = Optimizer(kind, [var], epsilon=1e-8)
        for _ in range(3):
            opt.apply([tf.constant(START * 2)], tf.constant(LR))  # gradient of sum(x^2)
        results[kind] = var.numpy()
    assert not np.allclose(results["adam"], results["nadam"])
    assert np.all(np.abs(results["nadam"]) < np.abs(START))


@pytest.mark.parametrize("settings, kind", [
    ({}, "sgd"), ({"adam": True}, "adam"), ({"nadam": True}, "nadam"), ({"adagrad": True}, "adagrad"),
    ({"adadelta": True}, "adadelta"), ({"rmsprop": True}, "rmsprop"), ({"momentum": 0.8}, "momentum"),
    ({"optimizer": {"class": "Adam", "beta1": 0.5}}, "adam"), ({"optimizer": {"class": "adamw"}}, "adamw"),
    ({"optimizer": {"class": "GradientDescent"}}, "sgd"),
])
def test_optimizer_from_config_flags_and_dicts(settings, kind):
    opt = optimizer_from_config(Config({**settings, "optimizer_epsilon": 1e-5}), [tf.Variable([1.0])])
    assert opt.kind == kind
    if "epsilon" in opt.options:
        assert opt.options["epsilon"] == 1e-5
    if kind == "momentum":
        assert opt.options["momentum"] == 0.8


def test_optimizer_config_errors_name_the_key():
    var = [tf.Variable([1.0])]
    with pytest.raises(ConfigError, match=r'"optimizer": unknown optimizer class \'adamm\''):
        optimizer_from_config(Config({"optimizer": {"class": "adamm"}}), var)
    with pytest.raises(ConfigError, match="has no option"):
        optimizer_from_config(Config({"optimizer": {"class": "adam", "bta1": 0.5}}), var)
    with pytest.raises(ConfigError, match="more than one optimizer flag"):
        optimizer_from_config(Config({"adam": True, "rmsprop": True}), var)
    with pytest.raises(ConfigError, match="choose one way"):
        optimizer_from_config(Config({"adam": True, "optimizer": {"class": "sgd"}}), var)
    assert canonical_kind("AdamOptimizer") == "adam"


def test_optimizer_state_round_trips_through_checkpoint(tmp_path):
    var = tf.Variable(START, name="lstm/W")
    opt = Optimizer("adam", [var])
    opt.apply([tf.constant(GRADS[0])], tf.constant(LR))
    path = tf.train.Checkpoint(var=var, opt=opt).save(str(tmp_path / "ckpt"))
    var2 = tf.Variable(np.zeros(3, np.float32), name="lstm/W")
    opt2 = Optimizer("adam", [var2])
    tf.train.Checkpoint(var=var2, opt=opt2).restore(path).assert_consumed()
    np.testing.assert_allclose(opt2.slots["lstm.W"]["m"].numpy(), opt.slots["lstm.W"]["m"].numpy())
    assert int(opt2.iterations.numpy()) == 1


@pytest.mark.parametrize("kind", ["adam", "adagrad"])
def test_optimizer_reset_gives_the_first_update_again(kind):
    var = tf.Variable(START)
    opt = Optimizer(kind, [var])
    opt.apply([tf.constant(GRADS[0])], tf.constant(LR))
    first = START - var.numpy()
    opt.apply([tf.constant(GRADS[1])], tf.constant(LR))
    opt.reset()
    assert int(opt.iterations.numpy()) == 0
    before = var.numpy()
    opt.apply([tf.constant(GRADS[0])], tf.constant(LR))
    np.testing.assert_allclose(before - var.numpy(), first, rtol=1e-5)
