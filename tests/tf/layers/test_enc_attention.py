import math

import numpy as np
import pytest

from returnn.errors import LayerConfigError
from returnn.tensor.dim import Dim, batch_dim, feature_dim
from returnn.testing import build_network, ragged_batch, rec_loop_dict, rec_unit_network

ENC_LENS = [7, 3, 5]
_TIME = Dim(None, "dec:time")
EXTERN = {"data": {"dims": [batch_dim, _TIME, feature_dim(4, "data:feature")]},
          "pos": {"dims": [batch_dim, _TIME, feature_dim(1, "pos:feature")]}, "enc": {"dim": 6}}


def _batch(seed=0, n_time=5):
    rng = np.random.default_rng(seed)
    batch = {**ragged_batch(rng, (3, n_time, 4), [n_time] * 3, "data"), **ragged_batch(rng, (3, 7, 6), ENC_LENS, "enc")}
    batch["pos"] = rng.uniform(-2, 9, size=(3, n_time, 1)).astype("float32")
    batch["pos:seq_len"] = batch["data:seq_len"]
    return batch


def _np_softmax_valid(energy, lens):
    """Softmax over the last axis [B, ..., T], frames >= lens[b] get 0."""
    mask = np.arange(energy.shape[-1]) < np.asarray(lens).reshape((-1,) + (1,) * (energy.ndim - 1))
    e = np.where(mask, energy, -np.inf)
    w = np.exp(e - e.max(-1, keepdims=True))
    return w / w.sum(-1, keepdims=True)


def _in_loop(unit, outside=None):
    """A rec layer over data running ``unit`` (the encoder ``base:data:enc`` and ``outside`` layers read whole)."""
    return build_network(rec_loop_dict(unit, outside=outside), extern_data=EXTERN)


def _loop_and_whole(net_dict, batch, *, outside=None, layers=("output",)):
    """Outputs [B, T, ...] of ``net_dict`` inside a rec loop over data (frames of data and pos, the encoder and
    ``outside`` whole) and on the whole decoder sequence; each layer of ``layers`` the same in both."""
    outside = outside or {}

    def in_loop(ref):
        return {"data": "data:source", "data:enc": "base:data:enc"}.get(ref, f"base:{ref}" if ref in outside else ref)

    unit = {name: {**layer, **{key: in_loop(layer[key]) for key in ("from", "base", "base_ctx") if key in layer}}
            for name, layer in net_dict.items()}
    unit = {name: {**layer, "is_output_layer": True} if name in layers else layer for name, layer in unit.items()}
    loop_net = _in_loop(unit, outside)
    whole_net = build_network({**outside, **net_dict}, extern_data=EXTERN)
    whole_net.load_params({name[len("output/"):] if name.startswith("output/") else name: value
                           for name, value in loop_net.get_params().items()})
    out, whole = loop_net(batch), whole_net(batch)
    stepped = {name: out["output" if name == "output" else f"output/{name}"].numpy().swapaxes(0, 1)
               for name in layers}
    for name in layers:
        np.testing.assert_allclose(stepped[name], whole[name].numpy(), rtol=1e-5, atol=1e-6)
    return rec_unit_network(loop_net), stepped, out


def test_dot_attention_frame_matches_numpy_and_whole_sequence():
    net_dict = {"output": {"class": "dot_attention", "from": "data", "base": "data:enc", "base_ctx": "ctx",
                           "energy_factor": 0.5}}
    batch = _batch()
    body, stepped, out = _loop_and_whole(net_dict, batch,
                                         outside={"ctx": {"class": "linear", "from": "data:enc", "n_out": 4}})
    assert body.templates["output"].batch_ndim == 2 and body.templates["output"].dim == 6
    weights = _np_softmax_valid(np.einsum("bqf,btf->bqt", batch["data"], out["ctx"].numpy()) * 0.5, ENC_LENS)
    np.testing.assert_allclose(stepped["output"], np.einsum("bqt,btf->bqf", weights, batch["enc"]), rtol=1e-5,
                               atol=1e-6)


def test_concat_attention_matches_numpy():
    net_dict = {"output": {"class": "concat_attention", "from": "data", "base": "data:enc", "base_ctx": "ctx"}}
    batch = _batch(1)
    body, stepped, out = _loop_and_whole(net_dict, batch,
                                         outside={"ctx": {"class": "linear", "from": "data:enc", "n_out": 4}})
    v = body.layers["output"].v.numpy()
    assert sorted(p.split(":")[0] for p in (var.name for var in body.variables)) == ["output/output/v"]
    energy = np.tanh(out["ctx"].numpy()[:, None] + batch["data"][:, :, None]) @ v  # [B, T_dec, T_enc]
    want = np.einsum("bqt,btf->bqf", _np_softmax_valid(energy, ENC_LENS), batch["enc"])
    np.testing.assert_allclose(stepped["output"], want, rtol=1e-5, atol=1e-6)


def _np_gauss_window(pos, enc, lens, window_size, std=1.0, inner_size=None, step=0.5):
    """RETURNN's gauss window: frames round(t) - W//2 + w clipped into each sequence, Gaussian of the distance."""
    out = []
    for b in range(enc.shape[0]):
        t = float(pos[b])
        idx = int(np.round(t)) - window_size // 2 + np.arange(window_size)
        frames = enc[b, np.clip(idx, 0, lens[b] - 1)]  # [W, F]
        offsets = [0.0] if inner_size is None else [k * step - inner_size / 2.0 for k in range(inner_size)]
        w = np.array([[math.exp(-(t + o - j) ** 2 / (2 * std ** 2)) / (std * math.sqrt(2 * math.pi)) for o in offsets]
                      for j in idx])  # [W, K]
        y = w.T @ frames
        out.append(y[0] if inner_size is None else y)
    return np.stack(out)


def test_gauss_window_attention_demo_att_copy_in_loop():
    """The attention of RETURNN's demo-tf-att-copy: a window of 10 around t, inner_size 5, then combine_dims."""
    net_dict = {"att": {"class": "gauss_window_attention", "window_size": 10, "inner_size": 5, "from": "data:pos",
                        "base": "data:enc"},
                "output": {"class": "combine_dims", "axes": "non_spatial", "from": "att"}}
    batch = _batch(2)
    body, stepped, _ = _loop_and_whole(net_dict, batch, layers=("att", "output"))
    assert body.templates["att"].batch_shape == (None, 5, 6) and body.templates["output"].batch_shape == (None, 30)
    for t in range(5):
        want = _np_gauss_window(batch["pos"][:, t, 0], batch["enc"], ENC_LENS, 10, inner_size=5)
        np.testing.assert_allclose(stepped["att"][:, t], want, rtol=1e-5, atol=1e-6)
    np.testing.assert_array_equal(stepped["output"], stepped["att"].reshape(3, 5, 30))


def test_gauss_window_attention_without_inner_size_and_std():
    net_dict = {"output": {"class": "gauss_window_attention", "window_size": 3, "std": 2.0, "from": "data:pos",
                           "base": "data:enc"}}
    batch = _batch(4)
    _, stepped, _ = _loop_and_whole(net_dict, batch)
    for t in range(5):
        want = _np_gauss_window(batch["pos"][:, t, 0], batch["enc"], ENC_LENS, 3, std=2.0)
        np.testing.assert_allclose(stepped["output"][:, t], want, rtol=1e-5, atol=1e-6)


def test_enc_attention_errors_name_layer_and_option():
    def build(layer):
        return _in_loop({"output": layer})

    with pytest.raises(LayerConfigError, match=r"layer 'output/output' \(class \"dot_attention\"\): \"base_ctx\": "
                                               r"required"):
        build({"class": "dot_attention", "from": "data:source", "base": "base:data:enc"})
    with pytest.raises(LayerConfigError, match=r"\"base_ctx\" .* needs the feature dim of the input"):
        build({"class": "concat_attention", "from": "data:source", "base": "base:data:enc",
               "base_ctx": "base:data:enc"})
    with pytest.raises(LayerConfigError, match=r"\"base\": expected a dense \[B, T, F\] layer"):
        build({"class": "gauss_window_attention", "from": "data:pos", "base": "data:source", "window_size": 3})
    with pytest.raises(LayerConfigError, match=r"class \"gauss_window_attention\"\): input .*expected positions"):
        build({"class": "gauss_window_attention", "from": "data:source", "base": "base:data:enc", "window_size": 3})
    with pytest.raises(LayerConfigError, match=r"\"window_size\" 0, .* expected positive values"):
        build({"class": "gauss_window_attention", "from": "data:pos", "base": "base:data:enc", "window_size": 0})
