"""Reading checkpoints written by RETURNN's TensorFlow backend: their variable names and layouts -> ours.

RETURNN puts a rec layer's params under an extra ``rec`` scope (``fw/rec/W``; in a rec subnetwork
``dec/rec/s/rec/W``), and its TF-cell units store TF's layouts (``lstm_cell/kernel`` [n_in + n, 4n] with
gates i, j, f, o and a forget bias of 1 added at runtime; ``gru_cell/gates|candidate/kernel``;
``basic_rnn_cell/kernel``). Batch norm stored older names and [1, 1, F] shapes (``param_version`` 0 and 1).
``returnn_value(name, stored)`` gives our variable ``name``'s value from such a checkpoint, or None.
"""

from __future__ import annotations

import itertools
import re
from typing import Callable, Mapping

import numpy as np

RETURNN_STEP_VAR = "global_step"  # RETURNN's train step counter; our checkpoints have updater/global_train_step
OUR_MARKER_PREFIX = "updater/"

_LSTM_CELLS = ("lstm_cell", "rnn/lstm_cell", "basic_lstm_cell", "rnn/basic_lstm_cell")
_UNIT_PARAMS = ("W", "W_re", "b")
_BATCH_NORM = re.compile(r"^(?P<dir>.*/batch_norm)/v2_(?P<stat>mean|variance|gamma|beta)$")
_LSTM_FORGET_BIAS = 1.0  # TF's LSTMCell / BasicLSTMCell add it at runtime; our units do not


def is_returnn_checkpoint(names) -> bool:
    """Whether a checkpoint's variable names are RETURNN's: none of our ``updater/`` state, and RETURNN's
    ``global_step`` or a rec layer's ``rec`` scope (``fw/rec/W``)."""
    names = list(names)
    if any(n.startswith(OUR_MARKER_PREFIX) for n in names):
        return False
    return RETURNN_STEP_VAR in names or any("/rec/" in n for n in names)


def rec_scope_variants(name: str) -> list[str]:
    """``dec/s/W`` -> the names RETURNN may give it: ``dec/s/W``, ``dec/rec/s/W``, ``dec/s/rec/W``, ...,
    ``dec/rec/s/rec/W`` (a ``rec`` scope after any layer of the path), nearest to our name first."""
    parts = name.split("/")
    variants = []
    for inserts in itertools.product((False, True), repeat=len(parts) - 1):
        path = []
        for part, insert in zip(parts, inserts + (False,)):
            path.append(part)
            if insert:
                path.append("rec")
        variants.append("/".join(path))
    return variants


def _split_tf_kernel(kernel: np.ndarray, n_gates_out: int) -> tuple[np.ndarray, np.ndarray]:
    """TF cell kernel [n_in + n, width] -> (input part [n_in, width], recurrent part [n, width])."""
    n_in = kernel.shape[0] - n_gates_out
    return kernel[:n_in], kernel[n_in:]


def _lstm_cell_params(stored: Mapping[str, np.ndarray], scope: str) -> dict[str, np.ndarray] | None:
    """W, W_re, b (gates j, i, f, o; forget bias folded in) from a TF LSTMCell's kernel / bias under ``scope``."""
    for cell in _LSTM_CELLS:
        kernel, bias = stored.get(f"{scope}/{cell}/kernel"), stored.get(f"{scope}/{cell}/bias")
        if kernel is None or bias is None:
            continue
        n = bias.shape[0] // 4

        def jifo(x: np.ndarray) -> np.ndarray:
            i, j, f, o = np.split(x, 4, axis=-1)
            return np.concatenate([j, i, f, o], axis=-1)

        w, w_re = _split_tf_kernel(kernel, n)
        b = jifo(bias).copy()
        b[2 * n:3 * n] += _LSTM_FORGET_BIAS
        return {"W": jifo(w), "W_re": jifo(w_re), "b": b}
    return None


def _gru_cell_params(stored: Mapping[str, np.ndarray], scope: str) -> dict[str, np.ndarray] | None:
    """W, W_re, b (blocks r, u, candidate) from a TF GRUCell's ``gates`` and ``candidate`` under ``scope``."""
    names = [f"{scope}/gru_cell/{part}/{kind}" for part in ("gates", "candidate") for kind in ("kernel", "bias")]
    if not all(name in stored for name in names):
        return None
    gates_k, gates_b, cand_k, cand_b = (stored[name] for name in names)
    n = cand_b.shape[0]
    gates_w, gates_re = _split_tf_kernel(gates_k, n)
    cand_w, cand_re = _split_tf_kernel(cand_k, n)
    return {"W": np.concatenate([gates_w, cand_w], axis=1), "W_re": np.concatenate([gates_re, cand_re], axis=1),
            "b": np.concatenate([gates_b, cand_b])}


def _basic_rnn_cell_params(stored: Mapping[str, np.ndarray], scope: str) -> dict[str, np.ndarray] | None:
    """W, W_re, b from a TF BasicRNNCell's kernel / bias under ``scope``."""
    kernel, bias = stored.get(f"{scope}/basic_rnn_cell/kernel"), stored.get(f"{scope}/basic_rnn_cell/bias")
    if kernel is None or bias is None:
        return None
    w, w_re = _split_tf_kernel(kernel, bias.shape[0])
    return {"W": w, "W_re": w_re, "b": bias}


_CELL_FORMATS: tuple[Callable[[Mapping[str, np.ndarray], str], dict[str, np.ndarray] | None], ...] = (
    _lstm_cell_params, _gru_cell_params, _basic_rnn_cell_params)


def _rec_unit_value(name: str, stored: Mapping[str, np.ndarray]) -> np.ndarray | None:
    """Our rec unit param ``<layer>/W|W_re|b`` from a TF cell's variables under ``<layer>/rec``."""
    scope, _, param = name.rpartition("/")
    if param not in _UNIT_PARAMS or not scope:
        return None
    for variant in rec_scope_variants(scope + "/rec"):
        for cell_format in _CELL_FORMATS:
            params = cell_format(stored, variant)
            if params is not None:
                return params[param]
    return None


def _batch_norm_value(name: str, stored: Mapping[str, np.ndarray]) -> np.ndarray | None:
    """Our ``<layer>/batch_norm/v2_<stat>`` [F] from RETURNN's ``v2_<stat>``, ``<stat>`` or
    ``<layer>_<layer>_output_<stat>`` (param_version 2, 1, 0; the older ones shaped [1, ..., F])."""
    match = _BATCH_NORM.match(name)
    if not match:
        return None
    for directory in rec_scope_variants(match["dir"]):
        pattern = re.compile(re.escape(directory) + r"/(?:[^/]*_)?" + match["stat"] + "$")
        found = sorted(key for key in stored if pattern.match(key))
        if len(found) == 1:
            return stored[found[0]].reshape(-1)
    return None


def returnn_value(name: str, stored: Mapping[str, np.ndarray]) -> np.ndarray | None:
    """The value of our variable ``name`` in a RETURNN checkpoint's ``stored`` tensors, or None if it has none."""
    for variant in rec_scope_variants(name):
        if variant in stored:
            return stored[variant]
    for convert in (_rec_unit_value, _batch_norm_value):
        value = convert(name, stored)
        if value is not None:
            return value
    return None


def missing_conv_bias(name: str, stored: Mapping[str, np.ndarray]) -> bool:
    """Whether ``name`` is a conv layer's ``bias`` that RETURNN did not make (its conv has no bias by default
    before behavior_version 10) while the layer's filter ``W`` [*filter, n_in, n_out] is there."""
    layer, _, param = name.rpartition("/")
    if param != "bias" or not layer:
        return False
    return any(f"{variant}/W" in stored and stored[f"{variant}/W"].ndim >= 3 for variant in rec_scope_variants(layer))
