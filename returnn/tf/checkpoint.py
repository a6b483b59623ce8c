"""Checkpoints ``model.NNN``: name-based TensorFlow bundles (``.index`` + ``.data-*``), written atomically.

Variables are stored under their own names (``lstm0_fw/W``, ``updater/optimizer/lstm0_fw.W/m``), as
RETURNN's checkpoints are, so ``tf.train.load_checkpoint`` lists them readably and a layer's params can
be loaded from another model by name. Checkpoints written by RETURNN's TF backend load too: their names
and layouts are mapped to ours (``returnn.tf.checkpoint_returnn``). A save goes to a temp prefix first;
the data file and then the index are renamed into place, so a checkpoint whose ``.index`` exists is complete.
"""

from __future__ import annotations

import contextlib
import difflib
import glob
import os
import re
import uuid
from typing import Mapping

import numpy as np
import tensorflow as tf

from returnn.errors import ReturnnError
from returnn.log import logger
from returnn.tf.checkpoint_returnn import is_returnn_checkpoint, missing_conv_bias, returnn_value

_TMP_MARK = ".tmp-"


class CheckpointError(ReturnnError, ValueError):
    """A checkpoint is missing, incomplete, or does not fit the model."""


class CheckpointDamagedError(CheckpointError):
    """A checkpoint's files are all there, but cannot be read (truncated or corrupt data or index)."""


def epoch_checkpoint_prefix(model: str, epoch: int) -> str:
    """RETURNN's naming: ``model`` prefix and epoch 3 -> ``model.003``."""
    return f"{model}.{epoch:03d}"


def variables_by_name(variables) -> dict[str, tf.Variable]:
    """Map variables to their names without the ':0' suffix; duplicate names are an error."""
    result: dict[str, tf.Variable] = {}
    for var in variables:
        name = var.name.split(":")[0]
        if name in result and result[name] is not var:
            raise CheckpointError(f"two variables share the name {name!r}; checkpoints need unique names")
        result[name] = var
    return result


def save_checkpoint(prefix: str, variables: Mapping[str, tf.Variable]) -> None:
    """Write all variables under their names to ``prefix.index`` / ``prefix.data-*`` atomically."""
    directory = os.path.dirname(os.path.abspath(prefix))
    os.makedirs(directory, exist_ok=True)
    tmp_prefix = f"{prefix}{_TMP_MARK}{uuid.uuid4().hex[:8]}"
    names = sorted(variables)
    try:
        tf.raw_ops.SaveV2(prefix=tmp_prefix, tensor_names=names, shape_and_slices=[""] * len(names),
                          tensors=[variables[n].read_value() for n in names])
        data_files = sorted(glob.glob(glob.escape(tmp_prefix) + ".data-*"))
        for tmp_data in data_files:
            os.replace(tmp_data, prefix + tmp_data[len(tmp_prefix):])
        os.replace(tmp_prefix + ".index", prefix + ".index")
    finally:
        for leftover in glob.glob(glob.escape(tmp_prefix) + "*"):
            with contextlib.suppress(FileNotFoundError):
                os.unlink(leftover)


def checkpoint_exists(prefix: str) -> bool:
    """Whether a complete checkpoint (index and data) exists at ``prefix``."""
    return os.path.exists(prefix + ".index") and bool(glob.glob(glob.escape(prefix) + ".data-*"))


def _reader(prefix: str):
    """TF's reader of the checkpoint at ``prefix``; CheckpointDamagedError naming its files if its index is broken."""
    if not checkpoint_exists(prefix):
        raise CheckpointError(f"no complete checkpoint at {prefix!r} (expected {prefix}.index and {prefix}.data-*)")
    try:
        return tf.train.load_checkpoint(prefix)
    except (tf.errors.OpError, ValueError, IndexError, OSError) as exc:
        raise _damaged(prefix, None, exc) from None


def _damaged(prefix: str, name: str | None, exc: BaseException) -> CheckpointDamagedError:
    files = ", ".join(os.path.basename(p) for p in sorted(glob.glob(glob.escape(prefix) + ".data-*")))
    what = f"reading variable {name!r}" if name is not None else "reading its index"
    return CheckpointDamagedError(
        f"checkpoint {prefix!r} is damaged: {what} failed ({type(exc).__name__}: {exc}); its data file ({files}) "
        f"is truncated or corrupt (disk full, or a copy cut short?)")


def checkpoint_shapes(prefix: str) -> dict[str, list[int]]:
    """The variable names of a checkpoint with their shapes, without reading the values."""
    return _reader(prefix).get_variable_to_shape_map()


def is_returnn_checkpoint_file(prefix: str) -> bool:
    """Whether the checkpoint at ``prefix`` was written by RETURNN (its names, no ``updater/`` state of ours)."""
    return is_returnn_checkpoint(checkpoint_shapes(prefix))


def read_checkpoint(prefix: str) -> dict[str, np.ndarray]:
    """All tensors of a checkpoint by name; CheckpointDamagedError naming its files if they cannot be read."""
    reader = _reader(prefix)
    name = None
    try:
        stored = {}
        for name in reader.get_variable_to_shape_map():
            stored[name] = reader.get_tensor(name)
        return stored
    except (tf.errors.OpError, ValueError, IndexError, OSError) as exc:  # IndexError: "Read less bytes than requested"
        raise _damaged(prefix, name, exc) from None


def _stored_value(key: str, var: tf.Variable, stored: Mapping[str, np.ndarray], from_returnn: bool,
                  zero_filled: list[str]) -> np.ndarray | None:
    """``key``'s value: by name, else (RETURNN checkpoints) mapped from RETURNN's names and layouts."""
    if key in stored or not from_returnn:
        return stored.get(key)
    value = returnn_value(key, stored)
    if value is None and missing_conv_bias(key, stored):
        zero_filled.append(key)
        value = np.zeros(var.shape, var.dtype.as_numpy_dtype)
    return value


def _missing_message(prefix: str, missing: list[str], stored: Mapping[str, np.ndarray], from_returnn: bool) -> str:
    """The names the model wants and the file lacks, each with the file's closest name, and what the file has."""
    plain = {name.replace("/rec/", "/"): name for name in stored}  # RETURNN's rec scopes compared away
    hints = []
    for key in missing[:8]:
        close = difflib.get_close_matches(key, list(plain), n=1, cutoff=0.6)
        hints.append(f"{key} (did you mean {plain[close[0]]!r}?)" if close else key)
    kind = "RETURNN checkpoint" if from_returnn else "checkpoint"
    return (f"{kind} {prefix!r} lacks {len(missing)} variable(s) of the model: {', '.join(hints)}"
            f"{' ...' if len(missing) > 8 else ''}; it has: {', '.join(sorted(stored)[:12])}"
            f"{' ...' if len(stored) > 12 else ''}")


def load_checkpoint(prefix: str, variables: Mapping[str, tf.Variable], *, ignore_missing: bool = False,
                    name_map: Mapping[str, str] | None = None) -> list[str]:
    """Assign checkpoint values to ``variables`` by name (``name_map``: our name -> name in the file).

    A RETURNN checkpoint's names and layouts are mapped to ours. Returns the names that were loaded.
    A missing name is an error (with the closest names the file has) unless ``ignore_missing``; a shape
    mismatch always is, naming the variable, both shapes and the file.
    """
    stored = read_checkpoint(prefix)
    from_returnn = is_returnn_checkpoint(stored)
    loaded, missing, zero_filled = [], [], []
    for name, var in variables.items():
        key = (name_map or {}).get(name, name)
        value = _stored_value(key, var, stored, from_returnn, zero_filled)
        if value is None:
            missing.append(key)
            continue
        if tuple(value.shape) != tuple(var.shape):
            raise CheckpointError(f"checkpoint {prefix!r}: variable {key!r} has shape {tuple(value.shape)}, "
                                  f"the model's {name!r} has {tuple(var.shape)}")
        var.assign(value.astype(var.dtype.as_numpy_dtype, copy=False))
        loaded.append(name)
    if missing and not ignore_missing:
        raise CheckpointError(_missing_message(prefix, missing, stored, from_returnn))
    if zero_filled:
        logger.warning(f"RETURNN checkpoint {prefix!r} has no {', '.join(zero_filled)}: RETURNN's conv layer has no "
                       'bias by default (behavior_version < 10); set to zero. Set "with_bias": False on the layer '
                       "to train exactly the same model")
    return loaded


def existing_epochs(model: str) -> list[int]:
    """Epochs with a complete checkpoint ``model.NNN`` on disk, sorted."""
    pattern = re.compile(re.escape(os.path.basename(model)) + r"\.(\d{3,})\.index$")
    epochs = []
    for path in glob.glob(glob.escape(model) + ".*.index"):
        match = pattern.match(os.path.basename(path))
        if match and checkpoint_exists(epoch_checkpoint_prefix(model, int(match.group(1)))):
            epochs.append(int(match.group(1)))
    return sorted(epochs)


def remove_checkpoint(prefix: str) -> None:
    """Delete a checkpoint's files, the index first (so a half-deleted one never looks complete)."""
    with contextlib.suppress(FileNotFoundError):
        os.unlink(prefix + ".index")
    for path in glob.glob(glob.escape(prefix) + ".data-*"):
        with contextlib.suppress(FileNotFoundError):
            os.unlink(path)


def remove_stale_temp_files(model: str) -> None:
    """Remove temp files of saves that were killed midway."""
    for path in glob.glob(glob.escape(model) + ".*" + _TMP_MARK + "*"):
        with contextlib.suppress(FileNotFoundError):
            os.unlink(path)
