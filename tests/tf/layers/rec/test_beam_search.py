"""Beam search in a rec unit: checked against teacher forcing of the same params (scores), brute force
(every label sequence of a tiny vocab), greedy decoding, and each sequence searched alone."""

import itertools

import numpy as np
import pytest

from returnn.errors import LayerConfigError
from returnn.log import logger
from returnn.tf.network import Network
from returnn.testing import random_batch

VOCAB = 4  # label 0 ends a hypothesis
EXTERN = {"data": {"dim": 5, "sparse": True}, "classes": {"dim": VOCAB, "sparse": True}}


def _net_dict(*, beam_size: int = 3, max_seq_len: int | None = 6, end: bool = True, include_eos: bool = True,
              search: bool = True, **choice_opts) -> dict:
    """An encoder-decoder: embedded input, an LSTM, its last state feeding a decoder LSTM over the previous label."""
    unit = {
        "emb": {"class": "linear", "from": "prev:output", "n_out": 6},
        "s": {"class": "rec", "unit": "lstm", "from": ["emb", "base:enc_last"], "n_out": 7},
        "prob": {"class": "softmax", "from": "s", "target": "classes", "loss": "ce", "is_output_layer": True},
        "output": {"class": "choice", "from": "prob", "target": "classes", "beam_size": beam_size,
                   "length_normalization": False, **choice_opts},
    }
    if search:  # what a searching choice gives besides its labels
        unit["score"] = {"class": "choice_get_beam_scores", "from": "output", "is_output_layer": True}
        unit["src"] = {"class": "choice_get_src_beams", "from": "output", "is_output_layer": True}
    if end:
        unit["end"] = {"class": "compare", "from": "output", "value": 0}
    rec = {"class": "rec", "from": [], "target": "classes", "unit": unit, "include_eos": include_eos}
    if max_seq_len is not None:
        rec["max_seq_len"] = max_seq_len
    return {
        "in_emb": {"class": "linear", "from": "data", "n_out": 6},
        "enc": {"class": "rec", "unit": "lstm", "from": "in_emb", "n_out": 5},
        "enc_last": {"class": "get_last_hidden_state", "from": "enc", "n_out": 10},
        "output": rec,
        "decision": {"class": "decide", "from": "output", "is_output_layer": True},
    }


def _networks(**opts) -> tuple[Network, Network]:
    """The teacher-forcing network and the search network with the same params (random, sharpened so that
    scores differ clearly)."""
    train = Network(_net_dict(search=False, **opts), extern_data=EXTERN, random_seed=3)
    search = Network(_net_dict(**opts), extern_data=EXTERN, random_seed=3, options={"search": True})
    params = {name: var.numpy() * 3.0 for name, var in train.get_params().items()}
    train.load_params(params)
    search.load_params(params)
    return train, search


def _inputs(n_batch: int = 3, seed: int = 1) -> dict:
    batch = random_batch(Network(_net_dict(search=False), extern_data=EXTERN).extern_data, n_batch=n_batch,
                         max_time=5, seed=seed)
    return {key: batch[key] for key in ("data", "data:seq_len")}


def _teacher_forced_log_probs(train: Network, inputs: dict, labels: np.ndarray, lens: np.ndarray) -> np.ndarray:
    """log p(label_t | labels_<t, input) [B, T] of the training network fed ``labels`` [B, T] as target."""
    out = train({**inputs, "classes": labels, "classes:seq_len": lens})["output/prob"].numpy()  # [T, B, V]
    probs = np.transpose(out, (1, 0, 2))
    return np.log(np.maximum(np.take_along_axis(probs, labels[..., None], axis=-1)[..., 0], 1e-30))


def _search_output(search: Network, inputs: dict) -> dict:
    """Labels [B*beam, T], lengths and scores of the rec layer ``output``."""
    out = search(inputs)["output"]
    return {"labels": np.transpose(out.numpy()), "lens": out.seq_lens.numpy(), "scores": out.beam_scores.numpy()}


def _search(search: Network, inputs: dict) -> dict:
    out = search(inputs)
    return {"labels": np.transpose(out["output"].numpy()), "lens": out["output"].seq_lens.numpy(),
            "scores": out["output"].beam_scores.numpy(), "steps": np.transpose(out["output/score"].numpy()),
            "src": np.transpose(out["output/src"].numpy()), "best": np.transpose(out["decision"].numpy()),
            "best_lens": out["decision"].seq_lens.numpy()}


def test_search_templates_say_where_the_beam_is():
    _, search = _networks(beam_size=3)
    assert search.templates["output"].describe() == "'output' ['output:time',B*beam(3, 'output')] sparse " \
                                                    "'classes:sparse-dim'(4)"
    assert search.templates["decision"].describe().startswith("'decision' ['output:time',B]")
    assert search.used_data_keys == ["data"]  # the search reads no target
    assert not search.loss_entries()


def test_a_search_keeps_no_frames_of_a_loss_sublayer():
    """Memory grows with beam x batch: the softmax [B*beam, vocab] of each step is not stacked for its loss."""
    net_dict = _net_dict()
    del net_dict["output"]["unit"]["prob"]["is_output_layer"]
    search = Network(net_dict, extern_data=EXTERN, options={"search": True})
    assert "prob" not in search.layers["output"].loop.plan.stacked
    assert "prob" in Network(_net_dict(search=False), extern_data=EXTERN).layers["output"].loop.plan.stacked


def test_beam_scores_are_the_teacher_forced_scores_along_each_hypothesis():
    train, search = _networks(beam_size=3)
    inputs = _inputs()
    found = _search(search, inputs)
    labels, lens = found["labels"], found["lens"]
    log_probs = _teacher_forced_log_probs(train, _repeat(inputs, 3), labels, lens)
    mask = np.arange(labels.shape[1])[None, :] < lens[:, None]
    cumulative = np.cumsum(np.where(mask, log_probs, 0.0), axis=1)
    np.testing.assert_allclose(found["steps"][mask], cumulative[mask], rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(found["scores"], cumulative[np.arange(len(lens)), lens - 1], rtol=1e-5, atol=1e-5)


def test_sublayers_before_and_after_the_choice_follow_each_hypothesis():
    """``prob`` (computed before the choice) and ``mix`` (after it, reading ``s`` from before it and the chosen
    label) stacked over a search are what teacher forcing of each hypothesis gives."""
    extra = {"label_emb": {"class": "linear", "from": "output", "n_out": 7},
             "mix": {"class": "combine", "kind": "add", "from": ["s", "label_emb"], "is_output_layer": True}}
    train = Network(_with_unit(_net_dict(search=False), extra), extern_data=EXTERN, random_seed=3)
    search = Network(_with_unit(_net_dict(), extra), extern_data=EXTERN, random_seed=3, options={"search": True})
    search.load_params({name: var.numpy() for name, var in train.get_params().items()})
    inputs = _inputs()
    out = search(inputs)
    labels, lens = np.transpose(out["output"].numpy()), out["output"].seq_lens.numpy()
    forced = train({**_repeat(inputs, 3), "classes": labels, "classes:seq_len": lens})
    mask = (np.arange(labels.shape[1])[None, :] < lens[:, None]).T  # [T, B*beam]
    for name in ("output/prob", "output/mix"):
        np.testing.assert_allclose(out[name].numpy()[mask], forced[name].numpy()[mask], rtol=1e-5, atol=1e-6)


def test_input_types_log_prob_and_logits_search_as_the_softmax_does():
    logits = {"logits": {"class": "linear", "from": "s", "n_out": VOCAB, "activation": None}}
    found = {}
    for input_type, scores in (("prob", {"class": "activation", "from": "logits", "activation": "softmax"}),
                               ("log_prob", {"class": "activation", "from": "logits", "activation": "log_softmax"}),
                               ("logits", {"class": "copy", "from": "logits"})):
        net_dict = _with_unit(_net_dict(input_type=input_type), {**logits, "scores": scores})
        net_dict["output"]["unit"]["output"]["from"] = "scores"
        net = Network(net_dict, extern_data=EXTERN, random_seed=3, options={"search": True})
        found[input_type] = _search(net, _inputs())
    for input_type in ("log_prob", "logits"):
        np.testing.assert_array_equal(found[input_type]["labels"], found["prob"]["labels"])
        np.testing.assert_allclose(found[input_type]["scores"], found["prob"]["scores"], rtol=1e-5, atol=1e-5)


def test_hypotheses_are_sorted_and_decide_takes_the_best():
    _, search = _networks(beam_size=4)
    found = _search(search, _inputs(n_batch=4))
    scores = found["scores"].reshape(4, 4)
    assert np.all(np.diff(scores, axis=1) <= 1e-6)
    first = found["labels"].reshape(4, 4, -1)[:, 0]
    np.testing.assert_array_equal(found["best"], first)
    np.testing.assert_array_equal(found["best_lens"], found["lens"].reshape(4, 4)[:, 0])


def test_beam_of_all_prefixes_is_the_exhaustive_search():
    """Vocab 4, 3 steps, beam 16 keeps every prefix at step 2: the 16 best of all 64 sequences, in order."""
    train, search = _networks(beam_size=16, max_seq_len=3, end=False)
    inputs = _inputs(n_batch=2)
    found = _search(search, inputs)
    every = np.array(list(itertools.product(range(VOCAB), repeat=3)), np.int32)  # [64, 3]
    for b in range(2):
        single = {"data": inputs["data"][b:b + 1].repeat(len(every), 0),
                  "data:seq_len": inputs["data:seq_len"][b:b + 1].repeat(len(every), 0)}
        totals = _teacher_forced_log_probs(train, single, every, np.full([len(every)], 3, np.int32)).sum(1)
        best = np.argsort(-totals, kind="stable")[:16]
        np.testing.assert_allclose(found["scores"][b * 16:(b + 1) * 16], totals[best], rtol=1e-5, atol=1e-5)
        np.testing.assert_array_equal(found["labels"][b * 16:(b + 1) * 16], every[best])


def test_beam_size_one_is_greedy_decoding():
    train, search = _networks(beam_size=1, max_seq_len=5, end=False)
    inputs = _inputs()
    found = _search(search, inputs)
    labels = found["labels"]
    probs = np.transpose(train({**inputs, "classes": labels,
                                "classes:seq_len": found["lens"]})["output/prob"].numpy(), (1, 0, 2))
    np.testing.assert_array_equal(labels, probs.argmax(-1))  # each label the argmax given the ones before


def test_ended_hypotheses_keep_their_score_and_length():
    _, search = _networks(beam_size=4, max_seq_len=8)
    found = _search(search, _inputs(n_batch=4, seed=5))
    lens, steps = found["lens"], found["steps"]
    ended = lens < 8
    assert ended.any(), "the example should end some hypotheses early"
    for row in np.nonzero(ended)[0]:
        assert found["labels"][row, lens[row] - 1] == 0  # include_eos: the end label is the last one
        np.testing.assert_allclose(steps[row, lens[row] - 1], found["scores"][row], rtol=1e-6)


def test_include_eos_false_drops_the_end_step():
    _, with_eos = _networks(beam_size=2, include_eos=True)
    _, without = _networks(beam_size=2, include_eos=False)
    inputs = _inputs(seed=7)
    a, b = _search(with_eos, inputs), _search(without, inputs)
    ended = a["lens"] < 6
    np.testing.assert_array_equal(b["lens"][ended], a["lens"][ended] - 1)


def test_ragged_batch_gives_each_sequence_its_own_result():
    _, search = _networks(beam_size=3)
    inputs = _inputs(n_batch=3, seed=11)
    assert len(set(inputs["data:seq_len"])) > 1
    together = _search(search, inputs)
    for b in range(3):
        n = inputs["data:seq_len"][b]
        alone = _search(search, {"data": inputs["data"][b:b + 1, :n], "data:seq_len": inputs["data:seq_len"][b:b + 1]})
        rows = slice(b * 3, (b + 1) * 3)
        np.testing.assert_array_equal(together["lens"][rows], alone["lens"])
        np.testing.assert_allclose(together["scores"][rows], alone["scores"], rtol=1e-5, atol=1e-6)
        for row, lens in zip(range(3), alone["lens"]):
            np.testing.assert_array_equal(together["labels"][rows][row, :lens], alone["labels"][row, :lens])


def test_a_search_over_input_frames_ends_each_sequence_with_its_input():
    """A loop over the input's frames (one label per frame): each sequence's hypotheses stop at its length, so
    a ragged batch gives what each sequence alone gives."""
    net = Network({"output": {"class": "rec", "from": "data", "target": "classes", "unit": {
        "emb": {"class": "linear", "from": "prev:output", "n_out": 6},
        "h": {"class": "linear", "from": ["data:source", "emb"], "n_out": 6, "activation": "tanh"},
        "prob": {"class": "softmax", "from": "h", "target": "classes", "loss": "ce"},
        "output": {"class": "choice", "from": "prob", "target": "classes", "beam_size": 3}}}},
        extern_data={"data": {"dim": 5}, "classes": {"dim": 4, "sparse": True}}, options={"search": True})
    batch = random_batch(net.extern_data, n_batch=3, max_time=6, seed=2)
    inputs = {key: batch[key] for key in ("data", "data:seq_len")}
    together = _search_output(net, inputs)
    for b, n in enumerate(inputs["data:seq_len"]):
        alone = _search_output(net, {"data": inputs["data"][b:b + 1, :n], "data:seq_len": np.array([n], np.int32)})
        rows = slice(b * 3, (b + 1) * 3)
        np.testing.assert_array_equal(together["lens"][rows], [n] * 3)
        np.testing.assert_allclose(together["scores"][rows], alone["scores"], rtol=1e-5, atol=1e-6)
        np.testing.assert_array_equal(together["labels"][rows][:, :n], alone["labels"])


def test_search_runs_in_one_trace_for_every_batch_shape():
    _, search = _networks(beam_size=3)
    forward = search.forward_function(["decision"])
    for n_batch, seed in ((2, 1), (5, 2)):
        out = forward(search.feed(_inputs(n_batch=n_batch, seed=seed)))
        assert out["decision"].shape[1] == n_batch
    assert forward.experimental_get_tracing_count() == 1


def test_without_max_seq_len_the_search_stops_at_a_length_from_the_input(caplog):
    logger.addHandler(caplog.handler)
    try:
        with caplog.at_level("INFO", logger="returnn"):
            _, search = _networks(beam_size=2, max_seq_len=None)
    finally:
        logger.removeHandler(caplog.handler)
    assert "max_len_from('data:data') * 3 + 10" in caplog.text
    inputs = _inputs(seed=3)
    found = _search(search, inputs)
    assert found["labels"].shape[1] <= inputs["data"].shape[1] * 3 + 10


def test_length_normalization_ranks_by_score_per_label():
    _, search = _networks(beam_size=3, length_normalization=True)
    found = _search(search, _inputs(n_batch=3, seed=5))
    ranking = found["scores"].reshape(3, 3)
    assert np.all(np.diff(ranking, axis=1) <= 1e-6)
    np.testing.assert_allclose(found["steps"][np.arange(9), found["lens"] - 1], found["scores"], rtol=1e-6)


def test_sampling_noise_changes_the_choice_but_keeps_valid_scores():
    train, search = _networks(beam_size=1, random_sample_scale=5.0, max_seq_len=5, end=False)
    inputs = _inputs()
    found = _search(search, inputs)
    log_probs = _teacher_forced_log_probs(train, inputs, found["labels"], found["lens"])
    np.testing.assert_allclose(found["scores"], log_probs.sum(1), rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("opts, match", [
    ({"cheating": True}, r'"cheating": not supported in a search'),
    ({"keep_beams": True}, r'"keep_beams": not supported in a search'),
    ({"beam_size": 0}, r'"beam_size": expected an int >= 1, got 0'),
])
def test_unsupported_search_options_are_named(opts, match):
    with pytest.raises(LayerConfigError, match=match):
        _networks(**opts)


def test_beam_scores_outside_a_search_are_an_error():
    with pytest.raises(LayerConfigError, match=r"'beam_scores' exists only while the choice searches"):
        Network(_net_dict(), extern_data=EXTERN)


def test_two_searching_choices_in_one_unit_are_an_error():
    net_dict = _net_dict()
    net_dict["output"]["unit"]["other"] = {"class": "choice", "from": "prob", "beam_size": 2, "is_output_layer": True}
    with pytest.raises(LayerConfigError, match=r"'other', 'output'|'output', 'other'"):
        Network(net_dict, extern_data=EXTERN, options={"search": True})


def _with_unit(net_dict: dict, layers: dict) -> dict:
    """``net_dict`` with more sublayers in the decoder's unit."""
    rec = dict(net_dict["output"], unit={**net_dict["output"]["unit"], **layers})
    return {**net_dict, "output": rec}


def _repeat(inputs: dict, k: int) -> dict:
    """Each sequence ``k`` times (the rows of a beam)."""
    return {key: np.repeat(value, k, axis=0) for key, value in inputs.items()}
