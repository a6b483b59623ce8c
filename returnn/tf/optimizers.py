"""Optimizers as ``tf.Module``s (no Keras): slots are variables, so checkpoints keep optimizer state.

Each update runs TensorFlow's fused per-variable kernel (``ResourceApplyAdam``, ...). The kinds and
their options, with RETURNN's config spelling (``optimizer = {"class": "adam", "beta1": 0.9}``):

============== ================================================= =====================================
kind           options (defaults)                                update
============== ================================================= =====================================
sgd            -                                                 var -= lr * g
momentum       momentum (0.9), use_nesterov (False)              a = m * a + g; var -= lr * a
adam           beta1 (0.9), beta2 (0.999), epsilon               Adam with bias correction
nadam          beta1, beta2, epsilon                             Adam with Nesterov momentum
adamw          beta1, beta2, epsilon, weight_decay (0.01)        Adam, then var -= lr * wd * var
adagrad        initial_accumulator_value (0.1), epsilon          Adagrad
adadelta       rho (0.95), epsilon                               Adadelta (lr usually 1.0)
rmsprop        decay (0.9), momentum (0.0), epsilon              RMSProp
============== ================================================= =====================================
"""

from __future__ import annotations

import re
from typing import Any, Sequence

import tensorflow as tf

from returnn.errors import ConfigError
from returnn.tf.distributed import assign_add, assign_sub

DEFAULT_EPSILON = 1e-16  # RETURNN's default `optimizer_epsilon` for TensorFlow
_OPTIONS = {
    "sgd": {},
    "momentum": {"momentum": 0.9, "use_nesterov": False},
    "adam": {"beta1": 0.9, "beta2": 0.999, "epsilon": DEFAULT_EPSILON},
    "nadam": {"beta1": 0.9, "beta2": 0.999, "epsilon": DEFAULT_EPSILON},
    "adamw": {"beta1": 0.9, "beta2": 0.999, "epsilon": DEFAULT_EPSILON, "weight_decay": 0.01},
    "adagrad": {"initial_accumulator_value": 0.1, "epsilon": 1e-7},
    "adadelta": {"rho": 0.95, "epsilon": 1e-8},
    "rmsprop": {"decay": 0.9, "momentum": 0.0, "epsilon": 1e-10},
}
_ALIASES = {"gradientdescent": "sgd", "gradient_descent": "sgd", "adamoptimizer": "adam", "adamw_optimizer": "adamw",
            "rms_prop": "rmsprop", "rmspropoptimizer": "rmsprop", "momentumoptimizer": "momentum",
            "gradientdescentoptimizer": "sgd", "adagradoptimizer": "adagrad", "adadeltaoptimizer": "adadelta",
            "nadamoptimizer": "nadam"}
_SLOTS = {"sgd": (), "momentum": ("momentum",), "adam": ("m", "v"), "nadam": ("m", "v"), "adamw": ("m", "v"),
          "adagrad": ("accumulator",), "adadelta": ("accum", "accum_update"), "rmsprop": ("ms", "mom")}


def canonical_kind(name: str) -> str:
    """Map RETURNN / TF spellings ("Adam", "AdamOptimizer", "GradientDescent") to our kinds."""
    key = re.sub(r"[^a-z_]", "", name.lower())
    key = _ALIASES.get(key, key)
    if key not in _OPTIONS:
        raise ConfigError(f'config key "optimizer": unknown optimizer class {name!r}; known: {", ".join(sorted(_OPTIONS))}')
    return key


class Optimizer(tf.Module):
    """One optimizer kind over a fixed list of variables; call ``apply(grads, lr)`` inside a tf.function."""

    def __init__(self, kind: str, variables: Sequence[tf.Variable], **options: Any):
        super().__init__(name="optimizer")
        self.kind = canonical_kind(kind)
        unknown = set(options) - set(_OPTIONS[self.kind])
        if unknown:
            raise ConfigError(f'config key "optimizer": {self.kind} has no option(s) {sorted(unknown)}; '
                              f"options: {sorted(_OPTIONS[self.kind]) or 'none'}")
        self.options = {**_OPTIONS[self.kind], **options}
        self.variables_to_train = list(variables)
        self.iterations = tf.Variable(0, dtype=tf.int64, trainable=False, name="iterations")
        self.slot_keys = _unique_slot_keys(self.variables_to_train)
        self.slots = {
            key: {slot: tf.Variable(self._initial_slot(slot, var), trainable=False, name=f"{key}/{slot}")
                  for slot in _SLOTS[self.kind]}
            for key, var in zip(self.slot_keys, self.variables_to_train)
        }

    def _initial_slot(self, slot: str, var: tf.Variable) -> tf.Tensor:
        init = self.options.get("initial_accumulator_value", 0.0) if slot == "accumulator" else 0.0
        return tf.fill(var.shape, tf.cast(init, var.dtype))

    def reset(self) -> None:
        """Back to the state before the first update: slots at their initial values, ``iterations`` 0."""
        self.iterations.assign(0)
        for key, var in zip(self.slot_keys, self.variables_to_train):
            for slot, slot_var in self.slots[key].items():
                slot_var.assign(self._initial_slot(slot, var))

    def apply(self, grads: Sequence[tf.Tensor | None], learning_rate: tf.Tensor) -> None:
        """Update every variable with its gradient (None: no update for that variable)."""
        assign_add(self.iterations, 1)
        step = tf.cast(self.iterations, tf.float32)
        for key, var, grad in zip(self.slot_keys, self.variables_to_train, grads):
            if grad is None:
                continue
            grad = tf.convert_to_tensor(grad)
            lr = tf.cast(learning_rate, var.dtype)
            self._apply_one(var, grad, lr, step, self.slots[key])

    def _apply_one(self, var: tf.Variable, grad: tf.Tensor, lr: tf.Tensor, step: tf.Tensor, slots: dict) -> None:
        opt, dtype = self.options, var.dtype
        if self.kind == "sgd":
            tf.raw_ops.ResourceApplyGradientDescent(var=var.handle, alpha=lr, delta=grad)
        elif self.kind == "momentum":
            tf.raw_ops.ResourceApplyMomentum(var=var.handle, accum=slots["momentum"].handle, lr=lr, grad=grad,
                                             momentum=tf.constant(opt["momentum"], dtype),
                                             use_nesterov=bool(opt["use_nesterov"]))
        elif self.kind in ("adam", "nadam", "adamw"):
            beta1, beta2 = tf.constant(opt["beta1"], dtype), tf.constant(opt["beta2"], dtype)
            if self.kind == "adamw" and opt["weight_decay"]:
                assign_sub(var, lr * tf.constant(opt["weight_decay"], dtype) * var)
            tf.raw_ops.ResourceApplyAdam(
                var=var.handle, m=slots["m"].handle, v=slots["v"].handle,
                beta1_power=tf.pow(beta1, tf.cast(step, dtype)), beta2_power=tf.pow(beta2, tf.cast(step, dtype)),
                lr=lr, beta1=beta1, beta2=beta2, epsilon=tf.constant(opt["epsilon"], dtype), grad=grad,
                use_nesterov=self.kind == "nadam")
        elif self.kind == "adagrad":
            tf.raw_ops.ResourceApplyAdagradV2(var=var.handle, accum=slots["accumulator"].handle, lr=lr,
                                              epsilon=tf.constant(opt["epsilon"], dtype), grad=grad)
        elif self.kind == "adadelta":
            tf.raw_ops.ResourceApplyAdadelta(var=var.handle, accum=slots["accum"].handle,
                                             accum_update=slots["accum_update"].handle, lr=lr,
                                             rho=tf.constant(opt["rho"], dtype), epsilon=tf.constant(opt["epsilon"], dtype),
                                             grad=grad)
        else:  # rmsprop
            tf.raw_ops.ResourceApplyRMSProp(var=var.handle, ms=slots["ms"].handle, mom=slots["mom"].handle, lr=lr,
                                            rho=tf.constant(opt["decay"], dtype),
                                            momentum=tf.constant(opt["momentum"], dtype),
                                            epsilon=tf.constant(opt["epsilon"], dtype), grad=grad)


def optimizer_from_config(config, variables: Sequence[tf.Variable]) -> Optimizer:
    """RETURNN's ways to choose an optimizer: an ``optimizer`` dict, or one of the flags
    ``adam``, ``nadam``, ``adagrad``, ``adadelta``, ``rmsprop`` (True) or ``momentum`` (a float > 0);
    plain SGD when none is set. ``optimizer_epsilon`` sets epsilon for every kind that has one."""
    spec = config.typed_value("optimizer")
    flags = [name for name in ("adam", "nadam", "adagrad", "adadelta", "rmsprop") if config.bool(name, False)]
    momentum = config.float("momentum", 0.0)
    if momentum:
        flags.append("momentum")
    if spec is not None and flags:
        raise ConfigError(f'config key "optimizer" is set, and so is the flag(s) {flags}: choose one way')
    if len(flags) > 1:
        raise ConfigError(f"config keys {flags}: more than one optimizer flag is set to True; set one")
    if spec is not None:
        if isinstance(spec, str):
            spec = {"class": spec}
        if not isinstance(spec, dict) or "class" not in spec:
            raise ConfigError(f'config key "optimizer": expected a dict with "class" (e.g. {{"class": "adam"}}), got {spec!r}')
        options = {k: v for k, v in spec.items() if k != "class"}
        kind = canonical_kind(str(spec["class"]))
    else:
        kind = flags[0] if flags else "sgd"
        options = {"momentum": momentum} if kind == "momentum" else {}
    if config.has("optimizer_epsilon") and "epsilon" in _OPTIONS[kind] and "epsilon" not in options:
        options["epsilon"] = config.float("optimizer_epsilon")
    return Optimizer(kind, variables, **options)


def _unique_slot_keys(variables: Sequence[tf.Variable]) -> list[str]:
    """Checkpoint-friendly slot keys from variable names ("lstm0_fw/W:0" -> "lstm0_fw.W"), made unique."""
    keys, seen = [], {}
    for var in variables:
        key = var.name.split(":")[0].replace("/", ".")
        seen[key] = seen.get(key, 0) + 1
        keys.append(key if seen[key] == 1 else f"{key}_{seen[key]}")
    return keys
