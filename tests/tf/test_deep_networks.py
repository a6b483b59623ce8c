"""Long chains of layers build and run with a Python stack whose depth does not grow with the chain."""

import sys
import time
from typing import Any, Iterator

import numpy as np
import pytest

from returnn.testing import build_network, random_batch, rec_loop_dict


@pytest.fixture
def shallow_stack() -> Iterator[None]:
    """A recursion limit 250 frames above the test's own depth: one frame per layer of a chain would overflow."""
    depth, frame = 0, sys._getframe()
    while frame is not None:
        depth, frame = depth + 1, frame.f_back
    old = sys.getrecursionlimit()
    sys.setrecursionlimit(depth + 250)
    try:
        yield
    finally:
        sys.setrecursionlimit(old)


def _chain(n: int, first: str) -> dict[str, Any]:
    """``l0`` from ``first``, ``l{i}`` from ``l{i-1}``: tanh on even layers, copy on odd ones."""
    layers = {}
    for i in range(n):
        src = first if i == 0 else f"l{i - 1}"
        layers[f"l{i}"] = ({"class": "activation", "activation": "tanh", "from": src} if i % 2 == 0
                           else {"class": "copy", "from": src})
    return layers


def _tanh_times(x: np.ndarray, n: int) -> np.ndarray:
    for _ in range(n):
        x = np.tanh(x)
    return x


def test_chain_of_1000_layers_builds_and_runs_without_deep_recursion(shallow_stack):
    start = time.perf_counter()
    net = build_network({**_chain(1000, "data"), "output": {"class": "copy", "from": "l999"}},
                        extern_data={"data": {"dim": 3}})
    assert list(net.layers)[:3] == ["l0", "l1", "l2"] and len(net.layers) == 1001
    batch = random_batch(net.extern_data, n_batch=2, max_time=4, seed=1)
    expected = _tanh_times(batch["data"].astype(np.float64), 500)
    np.testing.assert_allclose(net(batch)["output"].numpy(), expected, rtol=1e-5, atol=1e-6)
    forward = net.forward_function(["output"])
    np.testing.assert_allclose(forward(net.feed(batch))["output"].numpy(), expected, rtol=1e-5, atol=1e-6)
    assert net.graph.depths()["output"] == 1001
    assert time.perf_counter() - start < 20  # about 2 s here; the bound only catches quadratic work


def test_rec_unit_chain_of_300_sublayers(shallow_stack):
    unit = {**_chain(300, "data:source"), "output": {"class": "combine", "kind": "add", "from": ["l299", "prev:output"]}}
    net = build_network(rec_loop_dict(unit), extern_data={"data": {"dim": 3}})
    batch = random_batch(net.extern_data, n_batch=2, max_time=4, seed=2)
    mask = batch.mask("data")[:, :, None]
    expected = np.cumsum(np.where(mask, _tanh_times(batch["data"].astype(np.float64), 150), 0.0), axis=1)
    out = net(batch)["output"].copy_as_batch_major().numpy()
    np.testing.assert_allclose(np.where(mask, out, 0.0), np.where(mask, expected, 0.0), rtol=1e-5, atol=1e-6)
