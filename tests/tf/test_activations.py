import numpy as np
import pytest

from returnn.errors import LayerConfigError
from returnn.tf.activations import get_activation


def test_activation_names_and_chain():
    x = np.linspace(-2, 2, 9).astype(np.float32)
    np.testing.assert_allclose(get_activation("relu")(x).numpy(), np.maximum(x, 0))
    np.testing.assert_allclose(get_activation(None)(x).numpy(), x)
    np.testing.assert_allclose(get_activation("abs+sqrt")(x).numpy(), np.sqrt(np.abs(x)), rtol=1e-6)


def test_activation_unknown_lists_known():
    with pytest.raises(LayerConfigError, match=r"unknown 'tahn'; known: .*tanh"):
        get_activation("relu+tahn")
