"""Learning-rate control: RETURNN's newbob rules and its learning-rate file format."""

from __future__ import annotations

import pytest

from returnn.config import Config
from returnn.errors import ConfigError
from returnn.lr_control import (EpochData, LearningRateControl, NewbobMultiEpoch, format_epoch_data,
                                learning_rate_control_from_config, read_learning_rate_file)

RETURNN_WRITTEN = """{
1: EpochData(learningRate=0.0008, error={
'dev_error_output/output_prob': 0.1597158714185534,
'dev_score_output/output_prob': 0.7316125233255415,
'train_score_output/output_prob': 0.9,
}),
2: EpochData(learningRate=np.float64(0.0008), error={
':meta:device': 'cpu',
'dev_error_output/output_prob': 0.16270349413262444,
'dev_score_output/output_prob': nan,
}),
}
"""


def control(kind: str, **config) -> LearningRateControl:
    return learning_rate_control_from_config(Config({"learning_rate_control": kind, "learning_rate": 1.0, **config}))


def run_epochs(ctrl: LearningRateControl, dev_scores: list[float]) -> list[float]:
    rates = []
    for epoch, score in enumerate(dev_scores, start=1):
        rates.append(ctrl.get_learning_rate_for_epoch(epoch))
        ctrl.set_epoch_error(epoch, {"train_score": score + 0.1, "dev_score": score, "dev_error": score / 10})
    rates.append(ctrl.get_learning_rate_for_epoch(len(dev_scores) + 1))
    return rates


def test_lr_control_constant_keeps_rate():
    assert run_epochs(control("constant"), [3.0, 2.0, 2.5]) == [1.0] * 4


def test_lr_control_newbob_decays_when_relative_improvement_is_small():
    # improvements: 3 -> 2 (-50%, keep), 2 -> 1.99 (-0.5% > -1%: decay), 1.99 -> 1.5 (keep)
    rates = run_epochs(control("newbob", newbob_learning_rate_decay=0.5), [3.0, 2.0, 1.99, 1.5])
    assert rates == [1.0, 1.0, 1.0, 0.5, 0.5]


def test_lr_control_newbob_abs_and_min_learning_rate():
    rates = run_epochs(control("newbob_abs", newbob_error_threshold=-0.5, min_learning_rate=0.3, newbob_learning_rate_decay=0.5),
                       [3.0, 2.0, 1.8, 1.7])
    assert rates == [1.0, 1.0, 1.0, 0.5, 0.3]


def test_lr_control_newbob_multi_epoch_uses_mean_over_window():
    ctrl = control("newbob_multi_epoch", newbob_multi_num_epochs=2, newbob_multi_update_interval=1, newbob_learning_rate_decay=0.1)
    assert isinstance(ctrl, NewbobMultiEpoch)
    # relative changes: e1->e2 -1.0 (huge gain), e2->e3 +0.0 -> mean -0.5: keep; e3->e4 0.0, mean of (0,0) = 0 > -0.01: decay
    rates = run_epochs(ctrl, [2.0, 1.0, 1.0, 1.0])
    assert rates[:4] == [1.0, 1.0, 1.0, 1.0] and rates[4] == pytest.approx(0.1)


def test_lr_control_learning_rates_list_then_control_takes_over():
    ctrl = control("newbob", learning_rates=[0.1, 0.2, 0.3])
    rates = run_epochs(ctrl, [3.0, 2.0, 1.0, 0.5])
    assert rates == [0.1, 0.2, 0.3, 0.3, 0.3]


def test_lr_control_decay_function_from_config():
    rates = run_epochs(control("newbob", learning_rate_decay=lambda lr: lr - 0.25), [1.0, 1.0, 1.0])
    assert rates == [1.0, 1.0, 0.75, 0.5]


def test_lr_control_error_measure_key_selects_score():
    ctrl = control("newbob", learning_rate_control_error_measure="dev_error")
    ctrl.set_epoch_error(1, {"dev_score": 1.0, "dev_error": 0.2})
    assert ctrl.get_error_key(1) == "dev_error"
    ctrl2 = control("newbob")
    ctrl2.set_epoch_error(1, {"train_score": 1.0, "dev_score_output/output_prob": 0.5})
    assert ctrl2.get_error_key(1) == "dev_score_output/output_prob"
    bad = control("newbob", learning_rate_control_error_measure="dev_wer")
    bad.set_epoch_error(1, {"dev_score": 1.0})
    assert bad.get_epoch_error_key_value(1) == ("dev_score", 1.0)  # RETURNN falls back to dev_score


def test_lr_control_file_round_trip_and_restart(tmp_path):
    path = str(tmp_path / "newbob.data")
    ctrl = control("newbob", learning_rate_file=path)
    run_epochs(ctrl, [3.0, 2.0, 1.99])
    ctrl.save()
    text = open(path).read()
    assert text.startswith("{\n1: EpochData(learningRate=1.0, error={\n'dev_error': 0.3,\n'dev_score': 3.0,\n")
    restarted = control("newbob", learning_rate_file=path)
    assert sorted(restarted.epoch_data) == [1, 2, 3, 4]
    assert restarted.get_learning_rate_for_epoch(4) == 0.5
    assert restarted.epoch_data[3].error == {"train_score": 2.09, "dev_score": 1.99, "dev_error": 0.199}


def test_lr_control_reads_file_written_by_returnn(tmp_path):
    path = tmp_path / "learning_rates"
    path.write_text(RETURNN_WRITTEN)
    data = read_learning_rate_file(str(path))
    assert data[1].learning_rate == 0.0008 and data[2].learning_rate == 0.0008
    assert data[1].error["dev_score_output/output_prob"] == pytest.approx(0.7316125233255415)
    assert data[2].error[":meta:device"] == "cpu"
    again = tmp_path / "again"
    again.write_text(format_epoch_data(data))
    assert repr(read_learning_rate_file(str(again))[1]) == repr(data[1])


def test_lr_control_broken_file_names_key(tmp_path):
    path = tmp_path / "lr"
    path.write_text("{1: EpochData(learningRate=0.1, error={\n")
    with pytest.raises(ConfigError, match='"learning_rate_file"'):
        read_learning_rate_file(str(path))


def test_lr_control_unknown_kind_lists_known():
    with pytest.raises(ConfigError, match="unknown 'newbobb'.*newbob_multi_epoch"):
        control("newbobb")


def test_lr_control_epoch_data_repr_is_stable():
    assert repr(EpochData(0.5, {"b": 2.0, "a": 1})) == "EpochData(learningRate=0.5, error={\n'a': 1,\n'b': 2.0,\n})"


def test_lr_control_meta_entries_never_decide_the_rate():
    ctrl = control("newbob")
    ctrl.set_epoch_meta(1, {"global_train_step": 0, "epoch_num_train_steps": 7})
    ctrl.set_epoch_error(1, {"wer": 0.3})
    assert ctrl.get_epoch_error_key_value(1) == ("wer", 0.3)
    assert ctrl.epoch_data[1].error[":meta:epoch_num_train_steps"] == 7  # verbatim, an int as RETURNN writes it
