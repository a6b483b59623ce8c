"""Which old checkpoints cleanup_old_models deletes."""

from __future__ import annotations

import pytest

from returnn.errors import ConfigError
from returnn.tf.model_cleanup import cleanup_options, epochs_to_delete


def test_model_cleanup_keeps_best_last_and_listed():
    options = cleanup_options({"keep_last_n": 2, "keep_best_n": 2, "keep": [1]})
    scores = {1: 5.0, 2: 1.0, 3: 3.0, 4: 0.5, 5: 4.0, 6: 4.5, 7: 6.0}
    assert epochs_to_delete(list(range(1, 8)), scores, options, final_epoch=10) == [3, 5]


def test_model_cleanup_never_deletes_final_epoch_and_handles_missing_scores():
    options = cleanup_options({"keep_last_n": 0, "keep_best_n": 1})
    assert epochs_to_delete([1, 2, 3], {1: 2.0}, options, final_epoch=3) == [2]


def test_model_cleanup_options():
    assert cleanup_options(False) is None and cleanup_options(None) is None
    assert cleanup_options(True) == {"keep_last_n": 2, "keep_best_n": 4, "keep": ()}
    with pytest.raises(ConfigError, match="keep_lastn"):
        cleanup_options({"keep_lastn": 3})


@pytest.mark.parametrize("value, match", [
    ({"keep_last_n": "3"}, r'"keep_last_n" expected an int \(a number of models\), got \'3\''),
    ({"keep_best_n": 1.5}, r'"keep_best_n" expected an int'),
    ({"keep": 5}, r'"keep" expected a list of epochs \(ints\), got 5'),
])
def test_model_cleanup_counts_of_the_wrong_type_are_config_errors(value, match):
    with pytest.raises(ConfigError, match=r'config key "cleanup_old_models": ' + match):
        cleanup_options(value)
    assert cleanup_options({"keep": [1, "2"], "keep_last_n": 0})["keep"] == [1, "2"]  # as accepted before
