import numpy as np

from returnn.testing import build_network, rec_loop_dict, rec_unit_network, run_network


def test_combine_dims_non_spatial_merges_static_axes_but_time():
    _, batch, out = run_network({"win": {"class": "window", "window_size": 3},
                                 "output": {"class": "combine_dims", "from": "win", "axes": "non_spatial"}},
                                extern_data={"data": {"dim": 2}}, max_time=5)
    y, win = out["output"], out["win"]
    assert y.numpy().shape == (3, 5, 6) and y.dims[1] is win.dims[1] and y.feature_dim.size == 6
    np.testing.assert_array_equal(y.numpy(), win.numpy().reshape(3, 5, 6))
    net, batch, out = run_network({"output": {"class": "combine_dims", "axes": "non_spatial"}},
                                  extern_data={"data": {"dim": 2}}, max_time=5)
    assert out["output"].dims == net.extern_data["data"].dims  # [B, T, F]: F alone, nothing to merge
    np.testing.assert_array_equal(out["output"].numpy(), batch["data"])


def test_combine_dims_other_axes_like_merge_dims():
    _, batch, out = run_network({"output": {"class": "combine_dims", "axes": ["S:1", "F"]}},
                                extern_data={"data": {"shape": (None, 3, 2)}}, max_time=4)
    np.testing.assert_array_equal(out["output"].numpy(), batch["data"].reshape(3, 4, 6))


def test_combine_dims_non_spatial_on_a_loop_frame():
    net, batch, out = run_network(rec_loop_dict({"output": {"class": "combine_dims", "from": "data:source",
                                                            "axes": "non_spatial"}}),
                                  extern_data={"data": {"shape": (None, 4, 5)}}, max_time=3)
    assert rec_unit_network(net).templates["output"].batch_shape == (None, 20)  # a frame [B, 4, 5]: no time to keep
    np.testing.assert_array_equal(out["output"].numpy(), batch["data"].reshape(3, 3, 20).transpose(1, 0, 2))
