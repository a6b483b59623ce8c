"""The learning-rate file is parsed as data: RETURNN's files read back, crafted ones are refused unrun."""

from __future__ import annotations

import math

import pytest

from returnn.errors import ConfigError
from returnn.lr_file import EpochData, format_epoch_data, read_learning_rate_file

# As RETURNN's better_repr writes it: short dicts on one line, numpy 2 scalars, inf / nan, meta entries.
RETURNN_WRITTEN = """{
1: EpochData(learningRate=0.001, error={'dev_score': 1.5, 'train_score': inf}),
2: EpochData(learningRate=np.float64(0.0005), error={
':meta:effective_learning_rate': np.float32(0.00025),
':meta:devices': ['cpu', 'gpu:0'],
':meta:shape': (3, -1, None),
':meta:opts': {'ok': True, 'steps': 12},
'dev_error': numpy.float64(nan),
'dev_score': -inf,
'train_score': +0.75,
}),
3: EpochData(learningRate=0.0005, error=1.25),
4: EpochData(learningRate=0.0005, error={}),
'5': EpochData(learningRate=None, error=None),
}
"""


def write(tmp_path, text: str) -> str:
    path = tmp_path / "learning_rates"
    path.write_text(text)
    return str(path)


def test_lr_file_reads_every_form_returnn_writes(tmp_path):
    data = read_learning_rate_file(write(tmp_path, RETURNN_WRITTEN))
    assert sorted(data) == [1, 2, 3, 4, 5]
    assert data[1].error == {"dev_score": 1.5, "train_score": math.inf}
    second = data[2]
    assert second.learning_rate == 0.0005 and type(second.learning_rate) is float
    assert second.error[":meta:devices"] == ["cpu", "gpu:0"]
    assert second.error[":meta:shape"] == (3, -1, None)
    assert second.error[":meta:opts"] == {"ok": True, "steps": 12}
    assert math.isnan(second.error["dev_error"]) and second.error["dev_score"] == -math.inf
    assert second.error["train_score"] == 0.75
    assert data[3].error == {"old_format_score": 1.25}
    assert data[4].error == {} and data[5].learning_rate is None


def test_lr_file_round_trips_what_we_write(tmp_path):
    written = {1: EpochData(0.1, {"dev_score": -math.inf, "dev_error": 0.25, "note": "x", ":meta:n": 3}),
               2: EpochData(0.05, {"dev_score": math.nan})}
    again = read_learning_rate_file(write(tmp_path, format_epoch_data(written)))
    assert format_epoch_data(again) == format_epoch_data(written)


@pytest.mark.parametrize("payload, found", [
    ("__import__('os').system('touch {marker}')", r"a call \"__import__\(.*where EpochData"),
    ("EpochData(learningRate=__import__('os').system('touch {marker}'))", r"a call \"__import__.*a learning rate"),
    ("EpochData.__class__", "attribute access 'EpochData.__class__'"),
    ("().__class__.__bases__", r"attribute access '\(\).__class__.__bases__'"),
    ("EpochData(learningRate=0.1, error={{':meta:x': (lambda: 1)()}})", r"a call '\(lambda: 1\)\(\)'"),
    ("EpochData(learningRate=0.1, error={{':meta:x': [c for c in 'ab']}})", "a comprehension"),
    ("EpochData(learningRate=0.1, error={{':meta:x': f'{{1}}'}})", "an f-string"),
    ("EpochData(learningRate=9**9**9)", "an operator expression '9 \\*\\* 9 \\*\\* 9'"),
    ("EpochData(learningRate=np.load('{marker}'))", r"a call \"np.load\("),
    ("EpochData(learningRate=0.1, error={{'dev_score': os}})", "the name 'os'"),
    ("EpochData(0.1)", "a float '0.1' where only the keywords"),
])
def test_lr_file_refuses_code_and_runs_nothing(tmp_path, payload, found):
    marker = tmp_path / "ran"
    path = write(tmp_path, "{\n1: EpochData(learningRate=0.1, error={}),\n2: " + payload.format(marker=marker) + ",\n}\n")
    with pytest.raises(ConfigError, match=rf'"learning_rate_file": .*learning_rates\', line 3: found {found}') as info:
        read_learning_rate_file(path)
    assert "read as data" in str(info.value)
    assert not marker.exists()


def test_lr_file_syntax_error_names_file_and_line(tmp_path):
    path = write(tmp_path, "{\n1: EpochData(learningRate=0.1, error={\n")
    with pytest.raises(ConfigError, match=r"learning_rates', line \d+: not a learning-rate file"):
        read_learning_rate_file(path)


def test_lr_file_non_utf8_names_file(tmp_path):
    path = tmp_path / "learning_rates"
    path.write_bytes(b"{1: EpochData(learningRate=0.1, error={'\xff': 1.0})}")
    with pytest.raises(ConfigError, match="learning_rates'.*cannot read"):
        read_learning_rate_file(str(path))
