import numpy as np
import pytest
import tensorflow as tf

from returnn.errors import LayerConfigError
from returnn.testing import build_network, random_batch

EXTERN = {"data": {"dim": 5}, "classes": {"dim": 4, "sparse": True}, "dense": {"dim": 4},
          "bits": {"dim": 4}, "labels": {"dim": 3, "sparse": True}}


def _softmax(x):
    e = np.exp(x - x.max(-1, keepdims=True))
    return e / e.sum(-1, keepdims=True)


def _losses(net_dict, *, seed=0, pad_value=0.0, max_time=7, batch=None):
    net = build_network(net_dict, extern_data=EXTERN)
    batch = batch or random_batch(net.extern_data, n_batch=4, max_time=max_time, seed=seed, pad_value=pad_value)
    outputs = net(batch)
    return net, batch, outputs, net.loss_values(outputs, batch)


def test_ce_sparse_matches_numpy_and_frame_error():
    net, batch, out, values = _losses({"output": {"class": "softmax", "loss": "ce"}})
    mask = batch.mask("data")
    probs = out["output"].numpy()[mask]
    labels = batch["classes"][mask]
    want = -np.log(probs[np.arange(len(labels)), labels]).mean()
    np.testing.assert_allclose(values["output"].loss.numpy(), want, rtol=1e-5)
    np.testing.assert_allclose(values["output"].error.numpy(), (probs.argmax(-1) != labels).mean(), rtol=1e-6)
    assert values["output"].num_frames.numpy() == mask.sum()
    np.testing.assert_allclose(net.total_loss(values).numpy(), want * mask.sum(), rtol=1e-5)  # RETURNN: the sum


def test_ce_label_smoothing_and_dense_targets():
    _, batch, out, values = _losses({"output": {"class": "softmax", "loss": "ce", "loss_opts": {"label_smoothing": 0.1}},
                                     "dense_out": {"class": "softmax", "loss": "ce", "target": "dense"}})
    mask = batch.mask("data")
    logp = np.log(out["output"].numpy()[mask])
    target = np.eye(4)[batch["classes"][mask]] * 0.9 + 0.1 / 4
    np.testing.assert_allclose(values["output"].loss.numpy(), -(target * logp).sum(-1).mean(), rtol=1e-5)
    logp = np.log(out["dense_out"].numpy()[mask])
    dense = batch["dense"][mask]
    np.testing.assert_allclose(values["dense_out"].loss.numpy(), -(dense * logp).sum(-1).mean(), rtol=1e-5)


def test_ce_use_fused_is_accepted_and_changes_nothing():
    _, _, _, fused = _losses({"output": {"class": "softmax", "loss": "ce", "loss_opts": {"use_fused": False}}})
    _, _, _, plain = _losses({"output": {"class": "softmax", "loss": "ce"}})
    np.testing.assert_allclose(fused["output"].loss.numpy(), plain["output"].loss.numpy(), rtol=1e-6)


def test_padding_never_changes_a_loss():
    net_dict = {"output": {"class": "softmax", "loss": "ce"},
                "reg": {"class": "linear", "n_out": 4, "loss": "mse", "target": "dense"},
                "abs": {"class": "linear", "n_out": 4, "loss": "l1", "target": "dense"},
                "bin": {"class": "linear", "n_out": 4, "activation": "sigmoid", "loss": "binary_ce", "target": "bits"},
                "as_is": {"class": "eval", "eval": "tf.reduce_sum(source(0) ** 2, axis=-1, keepdims=True)",
                          "out_type": {"dim": 1}, "loss": "as_is"}}
    _, _, _, zero_pad = _losses(net_dict, seed=3, pad_value=0.0)
    _, _, _, big_pad = _losses(net_dict, seed=3, pad_value=1e3)
    for name in net_dict:
        np.testing.assert_allclose(zero_pad[name].loss.numpy(), big_pad[name].loss.numpy(), rtol=1e-6, err_msg=name)


def test_mse_l1_binary_ce_as_is_match_numpy():
    net_dict = {"reg": {"class": "linear", "n_out": 4, "loss": "mse", "target": "dense", "is_output_layer": True},
                "abs": {"class": "linear", "n_out": 4, "loss": "l1", "target": "dense"},
                "bin": {"class": "linear", "n_out": 4, "activation": "sigmoid", "loss": "binary_ce", "target": "bits"},
                "as_is": {"class": "copy", "loss": "as_is", "loss_scale": 0.5}}
    net, batch, out, values = _losses(net_dict, seed=2)
    mask = batch.mask("data")
    diff = out["reg"].numpy()[mask] - batch["dense"][mask]
    np.testing.assert_allclose(values["reg"].loss.numpy(), (diff ** 2).sum(-1).mean(), rtol=1e-5)
    diff = out["abs"].numpy()[mask] - batch["dense"][mask]
    np.testing.assert_allclose(values["abs"].loss.numpy(), np.abs(diff).sum(-1).mean(), rtol=1e-5)
    p, t = out["bin"].numpy()[mask], batch["bits"][mask]
    want = -(t * np.log(p) + (1 - t) * np.log(1 - p)).sum(-1).mean()
    np.testing.assert_allclose(values["bin"].loss.numpy(), want, rtol=1e-4)
    np.testing.assert_allclose(values["bin"].error.numpy(), ((p > 0.5) != (t > 0.5)).mean(), rtol=1e-6)
    as_is = batch["data"][mask].sum(-1).mean()
    np.testing.assert_allclose(values["as_is"].loss.numpy(), as_is, rtol=1e-5)
    total = sum(values[n].loss.numpy() * values[n].num_frames.numpy() for n in ("reg", "abs", "bin", "as_is"))
    total -= 0.5 * as_is * values["as_is"].num_frames.numpy()  # its loss_scale
    np.testing.assert_allclose(net.total_loss(values).numpy(), total, rtol=1e-5)


def test_loss_is_reported_per_frame_and_minimized_as_the_sum_unless_normalized():
    per_frame, total = {}, {}
    for normalized in (False, True):
        net, batch, out, values = _losses({"output": {"class": "softmax", "loss": "ce",
                                                      "loss_opts": {"use_normalized_loss": normalized}}})
        mask = batch.mask("data")
        probs, labels = out["output"].numpy()[mask], batch["classes"][mask]
        nll = -np.log(probs[np.arange(len(labels)), labels])
        per_frame[normalized], total[normalized] = values["output"].loss.numpy(), net.total_loss(values).numpy()
        np.testing.assert_allclose(per_frame[normalized], nll.mean(), rtol=1e-5)
        np.testing.assert_allclose(total[normalized], nll.mean() if normalized else nll.sum(), rtol=1e-5)
    assert total[False] > total[True]


def test_ce_gradient_matches_finite_differences():
    net = build_network({"output": {"class": "softmax", "loss": "ce"}}, extern_data=EXTERN)
    batch = random_batch(net.extern_data, n_batch=3, max_time=5, seed=8)
    w = net.layers["output"].W

    def loss():
        return net.total_loss(net.loss_values(net(batch), batch))

    with tf.GradientTape() as tape:
        value = loss()
    grad = tape.gradient(value, w).numpy()
    eps = 1e-2
    for idx in [(0, 0), (2, 1), (4, 3)]:
        orig = w.numpy()
        bumped = orig.copy()
        bumped[idx] += eps
        w.assign(bumped)
        plus = loss().numpy()
        bumped[idx] -= 2 * eps
        w.assign(bumped)
        minus = loss().numpy()
        w.assign(orig)
        np.testing.assert_allclose(grad[idx], (plus - minus) / (2 * eps), rtol=2e-2, atol=1e-4)


def _ctc_numpy(log_probs, labels):
    """CTC negative log-likelihood of one sequence, blank = last class (forward algorithm in log space)."""
    blank = log_probs.shape[1] - 1
    ext = [blank]
    for label in labels:
        ext += [label, blank]
    alpha = np.full(len(ext), -np.inf)
    alpha[0] = log_probs[0, blank]
    if len(ext) > 1:
        alpha[1] = log_probs[0, ext[1]]
    for t in range(1, len(log_probs)):
        new = np.full(len(ext), -np.inf)
        for s in range(len(ext)):
            terms = [alpha[s]] + ([alpha[s - 1]] if s >= 1 else [])
            if s >= 2 and ext[s] != blank and ext[s] != ext[s - 2]:
                terms.append(alpha[s - 2])
            new[s] = np.logaddexp.reduce(terms) + log_probs[t, ext[s]]
        alpha = new
    return -np.logaddexp(alpha[-1], alpha[-2] if len(ext) > 1 else -np.inf)


def _edit_distance(a, b):
    d = np.arange(len(b) + 1)
    for i, x in enumerate(a, 1):
        prev, d[0] = d[0], i
        for j, y in enumerate(b, 1):
            prev, d[j] = d[j], min(d[j] + 1, d[j - 1] + 1, prev + (x != y))
    return d[-1]


def test_ctc_matches_numpy_forward_algorithm_and_greedy_error():
    net = build_network({"output": {"class": "softmax", "n_out": 4, "loss": "ctc", "target": "labels"}},
                        extern_data=EXTERN)
    batch = random_batch(net.extern_data, n_batch=3, max_time={"data": 8, "classes": 8, "dense": 8, "bits": 8,
                                                               "labels": 3}, seed=4)
    out = net(batch)
    values = net.loss_values(out, batch)["output"]
    logp = np.log(out["output"].numpy())
    t_lens, l_lens = batch.seq_lens("data"), batch.seq_lens("labels")
    want = sum(_ctc_numpy(logp[b, :t_lens[b]], batch["labels"][b, :l_lens[b]]) for b in range(3))
    np.testing.assert_allclose(values.loss.numpy(), want / l_lens.sum(), rtol=1e-4)
    errors = 0
    for b in range(3):
        best = logp[b, :t_lens[b]].argmax(-1)
        hyp = [c for i, c in enumerate(best) if c != 3 and (i == 0 or c != best[i - 1])]
        errors += _edit_distance(hyp, list(batch["labels"][b, :l_lens[b]]))
    np.testing.assert_allclose(values.error.numpy(), errors / l_lens.sum(), rtol=1e-6)


def test_loss_config_errors():
    with pytest.raises(LayerConfigError, match=r"layer 'output' .*\"loss\": unknown loss 'cee'; did you mean 'ce'"):
        build_network({"output": {"class": "softmax", "loss": "cee"}}, extern_data=EXTERN)
    with pytest.raises(LayerConfigError, match=r"\"loss_opts\": unknown option 'label_smothing'; did you mean"):
        build_network({"output": {"class": "softmax", "loss": "ce", "loss_opts": {"label_smothing": 0.1}}},
                      extern_data=EXTERN)
    with pytest.raises(LayerConfigError, match=r"output dim 3 .* does not match target dim 4"):
        build_network({"output": {"class": "softmax", "n_out": 3, "loss": "ce"}}, extern_data=EXTERN)
    with pytest.raises(LayerConfigError, match=r"ctc output dim must be target dim \+ 1"):
        build_network({"output": {"class": "softmax", "n_out": 3, "loss": "ctc", "target": "labels"}},
                      extern_data=EXTERN)
    with pytest.raises(LayerConfigError, match=r"\"target\": no extern data key 'nope'"):
        build_network({"output": {"class": "softmax", "loss": "ce", "target": "nope"}}, extern_data=EXTERN)


def test_ce_without_time_axis_per_sequence_targets():
    extern = {"vec": {"shape": (6,), "time_dim_axis": None}, "speaker": {"shape": (), "dim": 3, "sparse": True,
                                                                           "time_dim_axis": None}}
    net = build_network({"output": {"class": "softmax", "from": "data:vec", "loss": "ce", "target": "speaker"}},
                        extern_data=extern)
    batch = random_batch(net.extern_data, n_batch=5, seed=1)
    out = net(batch)
    value = net.loss_values(out, batch)["output"]
    probs = out["output"].numpy()
    want = -np.log(probs[np.arange(5), batch["speaker"]]).mean()
    np.testing.assert_allclose(value.loss.numpy(), want, rtol=1e-5)
    assert value.num_frames.numpy() == 5


def test_ce_stable_for_saturated_softmax():
    net = build_network({"output": {"class": "softmax", "loss": "ce"}},
                        extern_data=EXTERN)
    net.layers["output"].W.assign(np.random.default_rng(0).standard_normal((5, 4)).astype(np.float32) * 300.0)
    batch = random_batch(net.extern_data, n_batch=2, max_time=4, seed=3)
    with tf.GradientTape() as tape:
        values = net.loss_values(net(batch), batch)
    grad = tape.gradient(values["output"].loss, net.layers["output"].W).numpy()
    mask = batch.mask("data")
    logits = (batch["data"].astype(np.float64) @ net.layers["output"].W.numpy().astype(np.float64))[mask]
    log_probs = logits - np.logaddexp.reduce(logits, axis=-1, keepdims=True)
    labels = batch["classes"][mask]
    want = -log_probs[np.arange(len(labels)), labels].mean()
    assert want > 50  # far beyond what log(clipped probs) could give
    np.testing.assert_allclose(values["output"].loss.numpy(), want, rtol=1e-4)
    assert np.isfinite(grad).all() and np.abs(grad).max() > 0


def test_edit_distance_loss_counts_edits_per_target_label_and_adds_nothing_to_train():
    extern = {"hyp": {"dim": 5, "sparse": True}, "classes": {"dim": 5, "sparse": True}}
    net = build_network({"output": {"class": "copy", "from": "data:hyp", "loss": "edit_distance", "target": "classes"}},
                        extern_data=extern)
    batch = random_batch(net.extern_data, n_batch=4, max_time=6, seed=5)
    value = net.loss_values(net(batch), batch)["output"]
    hyp_lens, ref_lens = batch.seq_lens("hyp"), batch.seq_lens("classes")
    edits = sum(_edit_distance(list(batch["hyp"][b, :hyp_lens[b]]), list(batch["classes"][b, :ref_lens[b]]))
                for b in range(4))
    np.testing.assert_allclose(value.loss.numpy(), edits / ref_lens.sum(), rtol=1e-6)
    np.testing.assert_allclose(value.error.numpy(), edits / ref_lens.sum(), rtol=1e-6)
    assert float(net.total_loss({"output": value})) == 0.0
    with pytest.raises(LayerConfigError, match=r"edit_distance compares sparse label sequences"):
        build_network({"output": {"class": "linear", "from": "data:hyp", "n_out": 5, "loss": "edit_distance",
                                  "target": "classes"}}, extern_data=extern)
