import numpy as np
import pytest
import tensorflow as tf

from returnn.errors import LayerConfigError
from returnn.tf.initializers import get_initializer, param_seed

SEED = param_seed(1, "x/W")


def _draw(spec, shape=(200, 300)):
    return get_initializer(spec)(shape, tf.float32, SEED).numpy()


def test_glorot_uniform_limit():
    values = _draw("glorot_uniform")
    limit = np.sqrt(6.0 / 500)
    assert np.abs(values).max() <= limit and np.abs(values).max() > 0.95 * limit


def test_named_call_and_constant():
    np.testing.assert_allclose(_draw("random_normal(stddev=0.1)").std(), 0.1, rtol=0.05)
    np.testing.assert_allclose(_draw("random_normal_initializer(mean=1.0, stddev=0.1)").mean(), 1.0, atol=0.01)
    assert (_draw(0.5, (3,)) == 0.5).all() and (_draw("ones", (2,)) == 1).all()
    np.testing.assert_allclose(_draw("variance_scaling(scale=2.0, mode='fan_in', distribution='normal')").std(),
                               np.sqrt(2.0 / 200), rtol=0.05)


def test_orthogonal_rows():
    q = _draw("orthogonal", (4, 6))
    np.testing.assert_allclose(q @ q.T, np.eye(4), atol=1e-5)


def test_deterministic_per_name():
    a = get_initializer("glorot_uniform")((3, 3), tf.float32, param_seed(1, "a/W")).numpy()
    b = get_initializer("glorot_uniform")((3, 3), tf.float32, param_seed(1, "a/W")).numpy()
    c = get_initializer("glorot_uniform")((3, 3), tf.float32, param_seed(1, "b/W")).numpy()
    np.testing.assert_array_equal(a, b)
    assert not np.allclose(a, c)


@pytest.mark.parametrize("spec, match", [
    ("glorot", "unknown"), ("random_normal(0.1)", "expected 'name'"), ("random_normal(x=1)", "unexpected keyword"),
    ("random_normal(stddev=a)", "literals"), ([1], "expected a name"),
])
def test_bad_initializers(spec, match):
    with pytest.raises(LayerConfigError, match=match):
        get_initializer(spec)
