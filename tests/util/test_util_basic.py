"""returnn.util.basic: the helpers RETURNN configs import, with RETURNN's meaning."""

from __future__ import annotations

import os
import pwd

import pytest

from returnn.config import Config, set_global_config
from returnn.errors import ConfigError, TaskError
from returnn.util.basic import (BackendEngine, BehaviorVersion, NotSpecified, dict_joined, get_fwd_compat_kwargs,
                                get_login_username, hms, human_bytes_size, human_size, make_hashable, to_bool)


def test_get_login_username_is_the_password_entry_of_the_uid():
    assert get_login_username() == pwd.getpwuid(os.getuid()).pw_name


def test_not_specified_is_a_marker_class():
    def f(x=NotSpecified):
        return NotSpecified.resolve(x, "default")

    assert f() == "default" and f(None) is None and f(0) == 0
    assert repr(NotSpecified) == "<NotSpecified>" and str(NotSpecified) == "NotSpecified"
    with pytest.raises(TypeError, match="marker"):
        NotSpecified()


def test_backend_engine_selects_tensorflow_only():
    BackendEngine.select_engine(config=Config({"backend": "tensorflow"}))
    assert BackendEngine.is_tensorflow_selected() and not BackendEngine.is_torch_selected()
    assert not BackendEngine.is_theano_selected()
    with pytest.raises(TaskError, match='"backend".*\'torch\''):
        BackendEngine.select_engine(config=Config({"backend": "torch"}))
    with pytest.raises(ConfigError, match="'theano'.*TensorFlow only"):
        BackendEngine.select_engine(BackendEngine.Theano)
    assert BackendEngine.get_selected_engine() == BackendEngine.TensorFlow


def test_behavior_version_reads_the_global_config():
    set_global_config(Config({"behavior_version": 12}))
    try:
        assert BehaviorVersion.get() == 12
    finally:
        set_global_config(None)
    assert BehaviorVersion.get() == 0


def test_formatting_helpers_match_returnn():
    assert hms(5025) == "1:23:45" and hms(59.9) == "0:00:59"
    assert human_size(700) == "700" and human_size(999) == "1.0K" and human_size(1500) == "1.5K" and human_size(2_500_000) == "2.5M"
    assert human_bytes_size(2048) == "2.0KB" and human_bytes_size(100) == "100B"
    assert to_bool("Yes") and not to_bool("false") and to_bool(1)
    with pytest.raises(ValueError, match="'maybe'"):
        to_bool("maybe")
    assert make_hashable({"b": [1, {2}], "a": 1}) == (("a", 1), ("b", (1, frozenset({2}))))
    assert dict_joined({"a": 1, "b": 1}, {"b": 2}) == {"a": 1, "b": 2}
    (key,) = get_fwd_compat_kwargs()
    assert key.startswith("__fwd_compat_random_arg_")
