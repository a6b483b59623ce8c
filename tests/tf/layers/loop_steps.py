"""Test stand-in for the rec loop: a network that says it is a loop body, run one frame per step in Python.

Until the rec layer's loop lands, layer tests check their in-loop behaviour with this: each step feeds frame t
of the ``frames`` keys (the loop's ``data:source``), the ``whole`` keys as they are (``data:enc`` stands in for a
``base:`` encoder), and calls ``step`` for layers with a loop state, the layer itself for the others.
"""

from typing import Any, Mapping

import numpy as np
import tensorflow as tf

from returnn.tensor.extern_data import seq_len_key
from returnn.tf.network import Network


class LoopBodyNetwork(Network):
    """A network whose layers see one frame per step, as inside a rec loop."""

    @property
    def inside_loop(self) -> bool:
        return True


def build_loop_network(net_dict: Mapping[str, Any], *, extern_data: Mapping[str, Any]) -> LoopBodyNetwork:
    """A loop body network (same seed and param names as ``build_network`` of the same dict)."""
    return LoopBodyNetwork(net_dict, extern_data=extern_data, random_seed=42)


def run_steps(net: Network, frames: Mapping[str, np.ndarray], whole: Mapping[str, np.ndarray], *,
              train: bool = False) -> dict[str, np.ndarray]:
    """Every layer of ``net`` once per frame ([B, T, ...] arrays in ``frames``): {layer: [B, T, ...] outputs}."""
    n_batch, n_time = next(iter(frames.values())).shape[:2]
    states = {name: layer.initial_state(tf.constant(n_batch)) for name, layer in net.layers.items()}
    outputs: dict[str, list] = {name: [] for name in net.layers}
    for t in range(n_time):
        batch = dict(whole, **{key: value[:, t] for key, value in frames.items()})
        values = {f"data:{key}": data for key, data in net.extern_values(batch, net.used_data_keys).items()}
        values["data"] = values.get("data:data")
        for name, layer in net.layers.items():
            sources = [values[ref] for ref in layer.ctx.source_names]
            refs = {ref: values[ref] for ref in layer.ctx.ref_templates}
            if states[name] is not None:
                out, states[name] = layer.step(sources, states[name], train=train, i=tf.constant(t), refs=refs)
            else:
                out = layer(sources, train=train, refs=refs) if refs else layer(sources, train=train)
            assert out.dims == net.templates[name].dims, f"{name}: {out.describe()} vs its template"
            values[name] = out
            outputs[name].append(out.numpy())
    return {name: np.stack(frames_out, axis=1) for name, frames_out in outputs.items()}


def ragged_batch(rng: np.random.Generator, shape: tuple[int, ...], lens: Any, key: str) -> dict[str, np.ndarray]:
    """``{key: normal floats [B, T, ...] with zeros after each length, "key:seq_len": lens}``."""
    x = rng.standard_normal(shape).astype("float32")
    lens = np.asarray(lens, np.int32)
    mask = np.arange(shape[1])[None, :] < lens[:, None]
    x *= mask.reshape(mask.shape + (1,) * (len(shape) - 2))
    return {key: x, seq_len_key(key): lens}
