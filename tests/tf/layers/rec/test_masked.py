import numpy as np

from returnn.testing import run_network

EXTERN = {"data": {"dim": 3}}
MASK = {"r": {"class": "reduce", "mode": "sum", "axes": "F", "from": "data"},
        "m": {"class": "compare", "from": "r", "kind": "greater", "value": 0.0}}


def _lstm_numpy(x, params):
    w, w_re, b = params["W"], params["W_re"], params["b"]
    n = w_re.shape[0]
    c, h, ys = np.zeros(n), np.zeros(n), []
    for frame in x:
        a = frame @ w + h @ w_re + b
        j, i, f, o = np.split(a, 4)
        sig = lambda v: 1 / (1 + np.exp(-v))  # noqa: E731
        c = sig(f) * c + sig(i) * np.tanh(j)
        h = sig(o) * np.tanh(c)
        ys.append(h)
    return np.array(ys).reshape(-1, n)


def _check_holds_last_computed_frame(net, batch, out):
    """Each frame is the LSTM (numpy) over the frames where the mask was set so far; zeros before the first."""
    p = {k.split("/")[-1]: v.numpy() for k, v in net.get_params().items()}
    x, lens = batch["data"], batch.seq_lens("data")
    y = out["output"].copy_as_batch_major().numpy()
    for b in range(3):
        keep = x[b, :lens[b]].sum(-1) > 0
        packed = _lstm_numpy(x[b, :lens[b]][keep], p)
        idx = np.cumsum(keep) - 1
        want = np.where((idx >= 0)[:, None], packed[np.maximum(idx, 0)] if len(packed) else 0.0, 0.0)
        np.testing.assert_allclose(y[b, :lens[b]], want, rtol=1e-5, atol=1e-6)


def test_masked_computation_packs_frames_and_unmask_repeats_them():
    net, batch, out = run_network({**MASK,
        "mc": {"class": "masked_computation", "from": "data", "mask": "m",
               "unit": {"class": "rec", "unit": "standardlstm", "n_out": 4}},
        "output": {"class": "unmask", "from": "mc", "mask": "m"}}, extern_data=EXTERN, n_batch=3, max_time=7, seed=4)
    _check_holds_last_computed_frame(net, batch, out)


def test_masked_computation_inside_loop_holds_output_and_state_where_masked():
    unit = {**{k: {**v, "from": "data:source"} if k == "r" else v for k, v in MASK.items()},
            "mc": {"class": "masked_computation", "from": "data:source", "mask": "m",
                   "unit": {"class": "rec", "unit": "standardlstm", "n_out": 4}},
            "output": {"class": "copy", "from": "mc"}}
    net, batch, out = run_network({"loop": {"class": "rec", "from": "data", "unit": unit},
                                   "output": {"class": "copy", "from": "loop"}}, extern_data=EXTERN, n_batch=3,
                                  max_time=7, seed=4)
    _check_holds_last_computed_frame(net, batch, out)
