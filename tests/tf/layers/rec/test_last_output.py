import numpy as np

from returnn.testing import run_network

EXTERN = {"data": {"dim": 3}}


def test_rec_last_output_is_the_sublayer_at_each_sequence_last_step():
    net, batch, out = run_network({
        "dec": {"class": "rec", "from": "data", "unit": {
            "s": {"class": "linear", "from": ["prev:s", "data:source"], "n_out": 4, "activation": "tanh"},
            "output": {"class": "copy", "from": "s"}}},
        "output": {"class": "rec_last_output", "rec_layer": "dec", "sub_layer_name": "s"}},
        extern_data=EXTERN, n_batch=3, max_time=6)
    dec = out["dec"].numpy()  # [T, B, 4]
    lens = batch.seq_lens("data")
    want = np.stack([dec[lens[b] - 1, b] for b in range(3)])
    np.testing.assert_allclose(out["output"].numpy(), want, rtol=1e-6)
    assert out["output"].dims[0].is_batch and out["output"].time_dim is None
