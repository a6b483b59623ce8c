"""The rec-loop demos in demos/ learn: each config, shortened to a few epochs through ``++`` overrides on the
command line, reaches a dev frame error well below chance (bounds: about 4x what was measured, see the configs)."""

from __future__ import annotations

import os

import pytest

from returnn.__main__ import main
from returnn.datasets import init_dataset
from returnn.lr_control import read_learning_rate_file

DEMOS = os.path.join(os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))), "demos")


def _train_demo(tmp_path, config: str, *, epochs: int) -> float:
    """Train ``demos/<config>`` for ``epochs`` epochs into ``tmp_path``; the dev frame error of the last one."""
    lr_file = str(tmp_path / "lr")
    code = main([os.path.join(DEMOS, config), "++num_epochs", str(epochs), "++model", str(tmp_path / "model"),
                 "++learning_rate_file", lr_file, "++log_verbosity", "2"])
    assert code == 0
    return read_learning_rate_file(lr_file)[epochs].error["dev_error"]


@pytest.mark.slow
def test_attention_demo_learns_to_reverse(tmp_path):
    # measured: 0.02 after 4 epochs; chance is 0.95 (20 symbols)
    assert _train_demo(tmp_path, "demo-tf-attention.reverse.config", epochs=4) < 0.08


@pytest.mark.slow
def test_attention_demo_searches_its_dev_set_without_errors(tmp_path):
    """Trained 10 epochs (about 20 s), beam search decodes every dev sequence exactly (measured: 0/200 errors)."""
    _train_demo(tmp_path, "demo-tf-attention.reverse.config", epochs=10)
    out = tmp_path / "search.txt"
    code = main([os.path.join(DEMOS, "demo-tf-attention.reverse.config"), "++task", "search", "++search_data", "dev",
                 "++search_output_file", str(out), "++model", str(tmp_path / "model"), "++log_verbosity", "2"])
    assert code == 0
    dev = init_dataset({"class": "ReverseTaskDataset", "nsymbols": 20, "minlen": 5, "maxlen": 15, "num_seqs": 200,
                        "fixed_random_seed": 1})
    dev.init_seq_order(epoch=1)
    hyps = out.read_text().splitlines()
    assert len(hyps) == 200
    wrong = [i for i, hyp in enumerate(hyps) if hyp != " ".join(map(str, dev.get_data(i, "classes")))]
    assert not wrong, f"{len(wrong)} of 200 dev sequences decoded wrongly, e.g. {wrong[:5]}"


@pytest.mark.slow
def test_transformer_decoder_demo_learns_toy_translation(tmp_path):
    # measured: 0.027 after 4 epochs; the most frequent target word alone gives about 0.9
    assert _train_demo(tmp_path, "demo-tf-transformer-decoder.config", epochs=4) < 0.10
