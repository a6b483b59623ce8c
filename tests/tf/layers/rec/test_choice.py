import numpy as np
import pytest

from returnn.errors import LayerConfigError
from returnn.testing import build_network, random_batch

EXTERN = {"data": {"dim": 4}, "classes": {"dim": 5, "sparse": True}}


def _decoder(**choice_opts) -> dict:
    """A decoder without input: the previous label embedded, a softmax over the labels, the choice."""
    return {"output": {"class": "rec", "from": [], "target": "classes", "optimize_move_layers_out": False, "unit": {
        "prev_emb": {"class": "linear", "from": "prev:output", "n_out": 3, "with_bias": False,
                     "is_output_layer": True},
        "prob": {"class": "softmax", "from": "prev_emb", "target": "classes", "loss": "ce"},
        "output": {"class": "choice", "from": "prob", "target": "classes", "beam_size": 4, **choice_opts},
    }}}


def test_choice_outside_a_loop_outputs_the_target():
    net = build_network({"prob": {"class": "softmax", "from": "data", "target": "classes", "loss": "ce"},
                         "output": {"class": "choice", "from": "prob", "target": "classes", "beam_size": 3}},
                        extern_data=EXTERN)
    template = net.templates["output"]
    assert template.sparse_dim is net.extern_data["classes"].sparse_dim and template.dtype == "int32"
    batch = random_batch(net.extern_data, n_batch=3, max_time=6, seed=2)
    out = net(batch)["output"]
    np.testing.assert_array_equal(out.numpy(), batch["classes"])
    np.testing.assert_array_equal(out.seq_lens.numpy(), batch.seq_lens("classes"))


def test_choice_in_a_loop_feeds_the_previous_target_label_back():
    net = build_network(_decoder(), extern_data=EXTERN)
    assert net.templates["output"].sparse_dim is net.extern_data["classes"].sparse_dim
    batch = random_batch(net.extern_data, n_batch=3, max_time=5, seed=4)
    out = net(batch, train=True)
    labels, lens = batch["classes"], batch.seq_lens("classes")
    valid = batch.mask("classes")
    got = np.transpose(out["output"].numpy())  # time-major -> [B, T]
    np.testing.assert_array_equal(got[valid], labels[valid])
    # step t embeds the label of step t - 1 (label 0 at step 0: prev:output starts at zeros)
    w = net.get_params()["output/prev_emb/W"].numpy()
    prev = np.concatenate([np.zeros_like(labels[:, :1]), labels[:, :-1]], axis=1)
    emb = np.transpose(out["output/prev_emb"].numpy(), (1, 0, 2))
    np.testing.assert_allclose(emb[valid], w[prev][valid], rtol=1e-6)
    np.testing.assert_array_equal(out["output"].seq_lens.numpy(), lens)


def test_choice_accepts_returnn_search_options():
    net = build_network(_decoder(input_type="log_prob", length_normalization=False, prob_scale=0.5,
                                 length_normalization_exponent=0.7, keep_beams=True, source_beam_sizes=[4]),
                        extern_data=EXTERN)
    opts = net.layers["output"].loop.plan.loop.layers["output"].opts  # the loop network's choice layer
    assert opts.beam_size == 4 and opts.input_type == "log_prob" and opts.length_normalization is False


@pytest.mark.parametrize("opts, match", [
    ({"search": True, "cheating": True}, r"\"cheating\": not supported in a search"),
    ({"target": None, "keep_beams": True}, r"\"keep_beams\": not supported in a search"),
    ({"beam_size": 0}, r"\"beam_size\": expected an int >= 1, got 0"),
    ({"input_type": "probs"}, r"\"input_type\": expected Literal"),
    ({"beam_siz": 4}, r"unknown option 'beam_siz'; did you mean 'beam_size'"),
    ({"scheduled_sampling": {"gold_mixin_prob": 0.5}}, r"\"scheduled_sampling\" \(search mixed into training\) is not "
                                                       r"supported"),
])
def test_choice_errors_name_the_layer(opts, match):
    net_dict = _decoder()
    choice = net_dict["output"]["unit"]["output"]
    choice.update(opts)
    for key in [key for key, value in opts.items() if value is None]:
        del choice[key]
    with pytest.raises(LayerConfigError, match=rf"layer 'output/output' \(class \"choice\"\).*{match}"):
        build_network(net_dict, extern_data=EXTERN)


def test_a_searching_choice_outside_a_rec_unit_is_an_error():
    with pytest.raises(LayerConfigError, match=r"layer 'output' \(class \"choice\"\): searches outside a rec loop"):
        build_network({"prob": {"class": "softmax", "from": "data", "n_out": 4},
                       "output": {"class": "choice", "from": "prob", "beam_size": 3}}, extern_data=EXTERN)


def test_choice_with_a_target_reads_only_the_target():
    """Teacher forcing: the scores are not an input (the loop optimizer can then move the choice out)."""
    net = build_network({"prob": {"class": "softmax", "from": "data", "n_out": 4, "is_output_layer": True},
                         "output": {"class": "choice", "from": "prob", "target": "classes", "beam_size": 3}},
                        extern_data=EXTERN)
    assert net.graph.same_step_deps("output") == [] and net._sources["output"] == []
    batch = random_batch(net.extern_data, n_batch=2, max_time=4, seed=3)
    np.testing.assert_array_equal(net(batch)["output"].numpy(), batch["classes"])
