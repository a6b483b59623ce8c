import numpy as np
import pytest

from returnn.errors import LayerConfigError
from returnn.testing import build_network, random_batch

EXTERN = {"data": {"dim": 4}, "classes": {"dim": 3, "sparse": True}}


def test_subnetwork_output_and_base_reference():
    net = build_network({
        "other": {"class": "linear", "n_out": 3, "forward_weights_init": 1.0},
        "output": {"class": "subnetwork", "from": "data", "loss": "ce", "subnetwork": {
            "hid": {"class": "linear", "n_out": 3, "activation": "relu"},
            "output": {"class": "combine", "kind": "add", "from": ["hid", "base:other"]}}},
    }, extern_data=EXTERN)
    assert sorted(net.get_params()) == ["other/W", "other/b", "output/hid/W", "output/hid/b"]
    batch = random_batch(net.extern_data, seed=2)
    out = net(batch)["output"].numpy()
    p = {k: v.numpy() for k, v in net.get_params().items()}
    hid = np.maximum(batch["data"] @ p["output/hid/W"] + p["output/hid/b"], 0)
    other = batch["data"] @ p["other/W"] + p["other/b"]
    mask = batch.mask("data")
    np.testing.assert_allclose(out[mask], (hid + other)[mask], rtol=1e-5)
    assert "output" in net.loss_values(net(batch), batch)


def test_subnetwork_errors_name_inner_layer():
    with pytest.raises(LayerConfigError, match=r"layer 'sub/output'.*no layer 'hidd'"):
        build_network({"sub": {"class": "subnetwork", "is_output_layer": True,
                               "subnetwork": {"hid": {"class": "copy"}, "output": {"class": "copy", "from": "hidd"}}}},
                      extern_data=EXTERN)
    with pytest.raises(LayerConfigError, match=r"layer 'output' \(class \"subnetwork\"\).*no 'output' layer"):
        build_network({"output": {"class": "subnetwork", "subnetwork": {"x": {"class": "copy"}}}}, extern_data=EXTERN)
    with pytest.raises(LayerConfigError, match=r"cycle: output -> output/output -> output"):
        build_network({"output": {"class": "subnetwork",
                                  "subnetwork": {"output": {"class": "copy", "from": "base:output"}}}},
                      extern_data=EXTERN)
