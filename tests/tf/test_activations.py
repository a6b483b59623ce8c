import numpy as np
import pytest

from returnn.errors import LayerConfigError
from returnn.tf.activations import get_activation

X = np.linspace(-2, 2, 9).astype(np.float32)


def _sigmoid(x):
    return 1 / (1 + np.exp(-x))


def test_activation_names():
    np.testing.assert_allclose(get_activation("relu")(X).numpy(), np.maximum(X, 0))
    np.testing.assert_allclose(get_activation(None)(X).numpy(), X)
    np.testing.assert_allclose(get_activation("none")(X).numpy(), X)


@pytest.mark.parametrize("name, ref", [
    ("2*sigmoid", lambda x: 2 * _sigmoid(x)),
    ("2 * sigmoid", lambda x: 2 * _sigmoid(x)),
    ("relu+tanh", lambda x: np.maximum(x, 0) + np.tanh(x)),  # RETURNN: the sum of both, not a chain
    ("3+2*sigmoid", lambda x: 3 + 2 * _sigmoid(x)),
    ("1-sigmoid", lambda x: 1 - _sigmoid(x)),
    ("tanh/2-0.5", lambda x: np.tanh(x) / 2 - 0.5),
    ("-tanh*1e-1", lambda x: -np.tanh(x) * 0.1),
    ("abs - abs - abs", lambda x: -np.abs(x)),
])
def test_activation_arithmetic_matches_numpy(name, ref):
    np.testing.assert_allclose(get_activation(name)(X).numpy(), ref(X), rtol=1e-5, atol=1e-6)


def test_activation_unknown_lists_known():
    with pytest.raises(LayerConfigError, match=r"unknown 'tahn'; known: .*tanh"):
        get_activation("2*tahn")


@pytest.mark.parametrize("name, match", [
    ("2*", "ends after an operator"),
    ("sigmoid 2", "unexpected '2'"),
    ("2*sigmoid(x)", "parentheses are not supported"),
    ("relu % 2", "unexpected '%"),
])
def test_activation_malformed_expression_says_what_is_expected(name, match):
    with pytest.raises(LayerConfigError, match=match):
        get_activation(name)
