"""A stand-in for the rec loop in these tests: a network whose layers see one frame (``inside_loop``),
run frame by frame in Python the way the loop runs its body (stateful layers through ``step``)."""

from __future__ import annotations

from typing import Any, Mapping

import numpy as np
import pytest

from returnn.tensor.data import Data
from returnn.tf.network import Network


class LoopBody(Network):
    """A network as a rec loop body: templates without a time axis, run once per frame."""

    @property
    def inside_loop(self) -> bool:
        return True


def loop_body(net_dict: Mapping[str, Any], *, extern_data: Mapping[str, Any], random_seed: int = 42) -> LoopBody:
    """A ``LoopBody`` from a net dict; extern data as one frame, e.g. ``{"shape": (5,), "time_dim_axis": None}``."""
    return LoopBody(net_dict, extern_data=extern_data, random_seed=random_seed)


def run_loop(net: LoopBody, frames: Mapping[str, np.ndarray], *, train: bool = False) -> dict[str, np.ndarray]:
    """Every layer (and asked-for sublayer) of ``net`` for each frame: ``{name: [T, B, ...]}``.

    ``frames`` maps extern keys to batch-major sequences [B, T, ...]; frame t of each is that step's input.
    A layer with a loop state runs ``step_with_subs`` (or ``step``), the others ``call_with_subs``.
    """
    batch, time = next(iter(frames.values())).shape[:2]
    states: dict[str, Any] = {name: layer.initial_state(batch) for name, layer in net.layers.items()}
    outputs: dict[str, list] = {}
    for t in range(time):
        values: dict[str, Data] = {}
        for key, array in frames.items():
            values[key] = values[f"data:{key}"] = net.extern_data[key].with_tensor(array[:, t])
        for name, layer in net.layers.items():
            sources = [values[ref] for ref in layer.ctx.source_names]
            refs = {ref: values[ref] for ref in layer.ctx.ref_templates}
            if states[name] is None:
                out, subs = layer.call_with_subs(sources, train=train, refs=refs)
            elif hasattr(layer, "step_with_subs"):
                out, subs, states[name] = layer.step_with_subs(sources, states[name], train=train, i=t, refs=refs)
            else:
                (out, states[name]), subs = layer.step(sources, states[name], train=train, i=t, refs=refs), {}
            assert out.dims == net.templates[name].dims, f"{name}: output differs from its template"
            values[name] = out
            values.update((f"{name}/{sub}", data) for sub, data in subs.items())
        for name, data in values.items():
            if name not in frames and not name.startswith("data:"):
                outputs.setdefault(name, []).append(data.numpy())
    return {name: np.stack(arrays) for name, arrays in outputs.items()}


@pytest.fixture
def loop():
    """``loop.body(net_dict, extern_data=...)`` and ``loop.run(net, frames)`` (see this module)."""

    class Loop:
        body = staticmethod(loop_body)
        run = staticmethod(run_loop)

    return Loop
