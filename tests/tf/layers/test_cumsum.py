import numpy as np
import pytest

from returnn.errors import LayerConfigError
from returnn.testing import build_network, ragged_batch, rec_loop_dict, rec_unit_network, run_network

EXTERN = {"data": {"dim": 3}}


@pytest.mark.parametrize("reverse", [False, True])
def test_cumsum_over_time_per_sequence(reverse):
    layer = {"class": "cumsum", "reverse": reverse, "additional_left_summand_per_element": 0.5}
    _, batch, out = run_network({"output": layer}, extern_data=EXTERN, n_batch=4, max_time=6, pad_value=9.0)
    y, lens = out["output"].numpy(), batch.seq_lens("data")
    for b, n in enumerate(lens):
        x = batch["data"][b, :n] + 0.5
        want = np.cumsum(x[::-1], 0)[::-1] if reverse else np.cumsum(x, 0)
        np.testing.assert_allclose(y[b, :n], want, rtol=1e-5, atol=1e-6)


def test_cumsum_static_axis():
    _, batch, out = run_network({"output": {"class": "cumsum", "axis": "F"}}, extern_data=EXTERN, max_time=4)
    np.testing.assert_allclose(out["output"].numpy(), np.cumsum(batch["data"], -1), rtol=1e-5)


def test_cumsum_in_loop_is_a_running_sum_equal_to_whole_sequence():
    loop_net = build_network(rec_loop_dict({"output": {"class": "cumsum", "from": "data:source"}}), extern_data=EXTERN)
    assert rec_unit_network(loop_net).layers["output"].initial_state(4).shape == (4, 3)
    batch = ragged_batch(np.random.default_rng(0), (4, 6, 3), [6, 2, 5, 1], "data")
    stepped = loop_net(batch)["output"].numpy().transpose(1, 0, 2)
    whole = build_network({"output": {"class": "cumsum", "from": "data"}}, extern_data=EXTERN)(batch)["output"]
    valid = np.arange(6)[None, :] < batch["data:seq_len"][:, None]
    np.testing.assert_allclose(stepped[valid], whole.numpy()[valid], rtol=1e-5, atol=1e-6)
    assert not stepped[~valid].any()


def test_cumsum_errors_name_layer_and_option():
    with pytest.raises(LayerConfigError,
                       match=r"layer 'output/output' \(class \"cumsum\"\): \"reverse\": not possible"):
        build_network(rec_loop_dict({"output": {"class": "cumsum", "from": "data:source", "reverse": True}}),
                      extern_data=EXTERN)
    with pytest.raises(LayerConfigError, match=r"layer 'output' \(class \"cumsum\"\): \"axis\": cannot use the batch"):
        build_network({"output": {"class": "cumsum", "axis": "B"}}, extern_data=EXTERN)
