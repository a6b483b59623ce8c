"""The rec-loop demos in demos/ learn: each config, shortened to a few epochs through ``++`` overrides on the
command line and run in a fresh directory, reaches a dev frame error well below chance (bounds: about 4x what was measured, see the configs)."""

from __future__ import annotations

import os

import pytest

from returnn.__main__ import main
from returnn.datasets import init_dataset
from returnn.lr_control import read_learning_rate_file

DEMOS = os.path.join(os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))), "demos")


def _train_demo(tmp_path, monkeypatch, config: str, *, epochs: int) -> list[float]:
    """Train ``demos/<config>`` for ``epochs`` epochs in ``tmp_path`` (it writes only to ``out/<demo>/`` there);
    the dev frame error of each epoch, the first at index 0."""
    monkeypatch.chdir(tmp_path)
    assert main([os.path.join(DEMOS, config), "++num_epochs", str(epochs), "++log_verbosity", "2"]) == 0
    demo = os.path.splitext(config)[0]
    assert os.listdir(tmp_path) == ["out"] and os.listdir(tmp_path / "out") == [demo]
    scores = read_learning_rate_file(str(tmp_path / "out" / demo / "learning_rates"))
    return [scores[epoch].error["dev_error"] for epoch in range(1, epochs + 1)]


@pytest.mark.slow
def test_attention_demo_learns_to_reverse_and_searches_its_dev_set_without_errors(tmp_path, monkeypatch):
    """Trained 10 epochs (about 20 s), beam search decodes every dev sequence exactly (measured: 0/200 errors)."""
    dev_errors = _train_demo(tmp_path, monkeypatch, "demo-tf-attention.reverse.config", epochs=10)
    assert dev_errors[3] < 0.08  # measured: 0.02 after 4 epochs; chance is 0.95 (20 symbols)
    out = tmp_path / "search.txt"
    code = main([os.path.join(DEMOS, "demo-tf-attention.reverse.config"), "++task", "search", "++search_data", "dev",
                 "++search_output_file", "search.txt", "++log_verbosity", "2"])
    assert code == 0
    dev = init_dataset({"class": "ReverseTaskDataset", "nsymbols": 20, "minlen": 5, "maxlen": 15, "num_seqs": 200,
                        "fixed_random_seed": 1})
    dev.init_seq_order(epoch=1)
    hyps = out.read_text().splitlines()
    assert len(hyps) == 200
    wrong = [i for i, hyp in enumerate(hyps) if hyp != " ".join(map(str, dev.get_data(i, "classes")))]
    assert not wrong, f"{len(wrong)} of 200 dev sequences decoded wrongly, e.g. {wrong[:5]}"


@pytest.mark.slow
def test_transformer_decoder_demo_learns_toy_translation(tmp_path, monkeypatch):
    # measured: 0.027 after 4 epochs; the most frequent target word alone gives about 0.9
    assert _train_demo(tmp_path, monkeypatch, "demo-tf-transformer-decoder.config", epochs=4)[-1] < 0.10
