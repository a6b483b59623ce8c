"""Task search end to end on a small encoder-decoder (untrained params: the output files, their order and
formats, scoring against the reference, forward_use_search), and its errors."""

from __future__ import annotations

import ast
import gzip

import h5py
import numpy as np
import pytest

from returnn.config import Config
from returnn.errors import ConfigError
from returnn.log import logger
from returnn.tf.engine import Engine
from returnn.tf.engine_tasks import run_forward, run_search

N_SYMBOLS = 6
BEAM = 3


def search_config(tmp_path, **overrides) -> dict:
    """An attention-free encoder-decoder on the reverse task whose targets get an end label (N_SYMBOLS)."""
    values = {
        "task": "search",
        "dev": {"class": "ReverseTaskDataset", "nsymbols": N_SYMBOLS, "minlen": 2, "maxlen": 6, "num_seqs": 11,
                "fixed_random_seed": 3},
        "extern_data": {"data": {"dim": N_SYMBOLS, "sparse": True}, "classes": {"dim": N_SYMBOLS, "sparse": True}},
        "network": {
            "emb": {"class": "linear", "from": "data", "n_out": 8},
            "enc": {"class": "rec", "unit": "lstm", "from": "emb", "n_out": 8},
            "enc_last": {"class": "get_last_hidden_state", "from": "enc", "n_out": 16},
            "output": {"class": "rec", "from": [], "target": "classes_eos", "max_seq_len": 9, "unit": {
                "prev_emb": {"class": "linear", "from": "prev:output", "n_out": 8},
                "s": {"class": "rec", "unit": "lstm", "from": ["prev_emb", "base:enc_last"], "n_out": 8},
                "prob": {"class": "softmax", "from": "s", "target": "classes_eos", "loss": "ce"},
                "output": {"class": "choice", "from": "prob", "target": "classes_eos", "beam_size": BEAM},
                "end": {"class": "compare", "from": "output", "value": N_SYMBOLS}}},
            "classes_ext": {"class": "reinterpret_data", "from": "data:classes", "increase_sparse_dim": 1},
            "classes_eos": {"class": "postfix_in_time", "from": "classes_ext", "postfix": N_SYMBOLS,
                            "register_as_extern_data": "classes_eos"},
            "best": {"class": "decide", "from": "output"},
        },
        "search_data": "dev",
        "batch_size": 1000, "max_seqs": 4,
        "model": str(tmp_path / "net"), "log_verbosity": 2,
    }
    values.update(overrides)
    return values


@pytest.fixture
def model(tmp_path):
    """A checkpoint of the config's (random) params, as a training run would write it."""
    Engine(Config(search_config(tmp_path, task="train"))).save_model(1)
    return tmp_path


@pytest.fixture
def log_text(caplog):
    logger.addHandler(caplog.handler)
    try:
        with caplog.at_level("INFO", logger="returnn"):
            yield lambda: caplog.text
    finally:
        logger.removeHandler(caplog.handler)


def _dev_tags(tmp_path) -> list[str]:
    from returnn.datasets import init_dataset
    dataset = init_dataset(search_config(tmp_path)["dev"])
    dataset.init_seq_order(epoch=1)
    return [dataset.get_tag(i) for i in range(dataset.num_seqs)]


def test_search_writes_an_nbest_list_per_sequence_in_corpus_order(model, log_text):
    out = model / "out.py"
    result = run_search(Config(search_config(model, search_output_file=str(out))))
    assert result["num_seqs"] == 11
    text = out.read_text()
    hyps = ast.literal_eval(text)
    assert list(hyps) == _dev_tags(model)  # a .py name: the py format, in corpus order
    for nbest in hyps.values():
        assert len(nbest) == BEAM
        scores = [score for score, _ in nbest]
        assert scores == sorted(scores, reverse=True)
        for _, hyp in nbest:  # label ids (the dataset has no vocab); the end label is not part of a hypothesis
            assert all(0 <= label < N_SYMBOLS for label in hyp) and len(hyp) <= 9
    assert "sequence errors" in log_text()  # against classes_eos, computed from dev's classes


def test_txt_output_holds_the_best_hypothesis_and_decide_gives_it(model):
    nbest, best, gz = model / "nbest.py", model / "best.txt", model / "best.txt.gz"
    run_search(Config(search_config(model, search_output_file=str(nbest))))
    run_search(Config(search_config(model, search_output_file=str(best), search_output_file_format="txt")))
    run_search(Config(search_config(model, search_output_file=str(gz), search_output_layer="best")))
    lines = best.read_text().splitlines()
    assert lines == [" ".join(map(str, entries[0][1])) for entries in ast.literal_eval(nbest.read_text()).values()]
    assert gzip.decompress(gz.read_bytes()).decode().splitlines() == lines


def test_search_scores_the_hypotheses_against_the_reference(model, log_text):
    result = run_search(Config(search_config(model)))
    errors = result["error"]
    assert errors.num_seqs == 11
    # the reference leaves out the end label as the hypotheses do (include_eos False): 2..6 symbols each
    assert 2 * 11 <= errors.ref_len <= 6 * 11
    assert "label error rate" in log_text()


def test_search_without_a_reference_says_so_and_goes_on(model, log_text):
    data = [{"data": np.array([1, 2, 3])}, {"data": np.array([4, 0])}]
    out = model / "out.txt"
    result = run_search(Config(search_config(model, search_data={"class": "StaticDataset", "data": data,
                                                                 "output_dim": {"data": [N_SYMBOLS, 1]}},
                                             search_output_file=str(out))))
    assert result["num_seqs"] == 2 and result["error"] is None
    assert "not scoring" in log_text()
    assert len(out.read_text().splitlines()) == 2


def test_forward_use_search_writes_the_best_hypotheses_to_hdf(model):
    best = model / "best.txt"
    run_search(Config(search_config(model, search_output_file=str(best), search_output_file_format="txt")))
    hdf = model / "out.hdf"
    config = search_config(model, task="forward", forward_use_search=True, output_file=str(hdf))
    run_forward(Config({**config, "forward_data": config["dev"]}))
    with h5py.File(hdf, "r") as f:
        tags = [tag.decode() if isinstance(tag, bytes) else tag for tag in f["seqTags"][()]]
        lens = f["seqLengths"][()][:, 0]
        inputs = f["inputs"][()]
    by_tag = dict(zip(_dev_tags(model), best.read_text().splitlines()))
    offsets = np.concatenate([[0], np.cumsum(lens)])
    assert sorted(tags) == sorted(by_tag)
    for i, tag in enumerate(tags):
        assert " ".join(map(str, inputs[offsets[i]:offsets[i + 1]])) == by_tag[tag]


def test_search_errors_name_the_config_key(model):
    with pytest.raises(ConfigError, match=r'"search_output_layer": no layer \'nope\''):
        run_search(Config(search_config(model, search_output_layer="nope")))
    with pytest.raises(ConfigError, match=r'"search_output_layer": layer \'enc\' gives .*expected sparse labels'):
        run_search(Config(search_config(model, search_output_layer="enc")))
    with pytest.raises(ConfigError, match=r'"search_data" is \'eval\', but config key \'eval\' is not set'):
        run_search(Config(search_config(model, search_data="eval")))
    with pytest.raises(ConfigError, match=r'"search_output_file_format": unknown format'):
        run_search(Config(search_config(model, search_output_file=str(model / "x"), search_output_file_format="js")))
