"""time_chunking / time_unchunking against a numpy model of RETURNN's windows."""

from __future__ import annotations

import numpy as np
import pytest

from returnn.errors import LayerConfigError
from returnn.testing import build_network, random_batch

NET = {"c": {"class": "time_chunking", "from": "data", "chunk_size": 4, "chunk_step": 2, "is_output_layer": True},
       "output": {"class": "time_unchunking", "from": "c", "chunking_layer": "c"}}


def _numpy_chunks(x: np.ndarray, lens: np.ndarray, size: int, step: int) -> tuple[np.ndarray, np.ndarray]:
    """x [B, T, F] -> ([size, n * B, F], [n * B]) with entry k * B + b the window k of sequence b."""
    batch, time, feat = x.shape
    n_chunks = max(time - size + step - 1, 0) // step + 1
    out, out_lens = np.zeros([size, n_chunks * batch, feat], np.float32), np.zeros([n_chunks * batch], np.int32)
    for k in range(n_chunks):
        for b in range(batch):
            n = int(np.clip(lens[b] - k * step, 0, size))
            out[:n, k * batch + b] = x[b, k * step:k * step + n]
            out_lens[k * batch + b] = n
    return out, out_lens


def test_time_chunking_matches_numpy_windows_and_unchunking_restores_the_input():
    net = build_network(NET, extern_data={"data": {"dim": 3}})
    batch = random_batch(net.extern_data, n_batch=3, max_time=7, seed=1)
    out = net(batch, train=False)
    x, lens = batch["data"], batch.seq_lens("data")
    want, want_lens = _numpy_chunks(x, lens, 4, 2)
    chunks = out["c"]
    assert chunks.tensor.shape == want.shape == (4, 9, 3)  # n = (7 - 4 + 1) // 2 + 1 = 3 windows
    np.testing.assert_allclose(chunks.tensor.numpy(), want, rtol=1e-6)
    np.testing.assert_array_equal(chunks.get_dyn_size(chunks.time_dim).numpy(), want_lens)
    back = out["output"].copy_as_batch_major().tensor.numpy()
    valid = batch.mask("data")
    np.testing.assert_allclose(back[valid], x[valid], rtol=1e-6)


def test_time_unchunking_averages_overlapping_windows():
    net = build_network({**NET, "scaled": {"class": "eval", "from": "c", "eval": "source(0) * 2.0"},
                         "output": {"class": "time_unchunking", "from": "scaled", "chunking_layer": "c"}},
                        extern_data={"data": {"dim": 2}})
    batch = random_batch(net.extern_data, n_batch=2, max_time=6, seed=2)
    back = net(batch, train=False)["output"].copy_as_batch_major().tensor.numpy()
    valid = batch.mask("data")
    np.testing.assert_allclose(back[valid], 2.0 * batch["data"][valid], rtol=1e-6)


def test_time_unchunking_needs_a_chunking_layer():
    with pytest.raises(LayerConfigError, match=r"layer 'output'.*\"chunking_layer\": expected the name of a "
                                               r"\"time_chunking\" layer, got 'lin'"):
        build_network({"lin": {"class": "linear", "from": "data", "n_out": 3},
                       "output": {"class": "time_unchunking", "from": "lin", "chunking_layer": "lin"}},
                      extern_data={"data": {"dim": 3}})


def test_time_chunking_rejects_bad_sizes():
    with pytest.raises(LayerConfigError, match=r"\"chunk_step\": expected an int >= 1, got 0"):
        build_network({"output": {"class": "time_chunking", "from": "data", "chunk_size": 3, "chunk_step": 0}},
                      extern_data={"data": {"dim": 3}})
