from typing import Sequence

import numpy as np
import pytest
import tensorflow as tf

from returnn.config import Config
from returnn.datasets.batching import Batch
from returnn.errors import ConfigError, DatasetError, LayerConfigError, LayerConstructionError
from returnn.tensor.data import Data
from returnn.tensor.dim import Dim, batch_dim, feature_dim
from returnn.testing import build_network, random_batch
from returnn.tf.network import Network
from returnn.tf.layers import LAYER_CLASSES, LayerBase, LayerContext, LayerOpts, register_layer
from returnn.tf.layers.opts import layer_ref

EXTERN = {"data": {"dim": 5}, "classes": {"dim": 4, "sparse": True}}


def test_network_builds_reachable_layers_in_dependency_order():
    net = build_network({
        "output": {"class": "copy", "from": ["b", "a"]},
        "b": {"class": "linear", "from": "a", "n_out": 2},
        "a": {"class": "linear", "n_out": 3},
        "unused": {"class": "linear", "n_out": 3},
    }, extern_data=EXTERN)
    assert list(net.layers) == ["a", "b", "output"]
    assert net.templates["output"].dim == 5


def test_network_list_sources_concatenated_on_features():
    net = build_network({"output": {"class": "copy", "from": ["data", "data:data"]}}, extern_data=EXTERN)
    batch = random_batch(net.extern_data, seed=3)
    out = net(batch)["output"].numpy()
    np.testing.assert_array_equal(out, np.concatenate([batch["data"], batch["data"]], axis=-1))


def test_network_data_key_and_none_sources():
    net = build_network({
        "emb": {"class": "embedding", "from": "data:classes", "n_out": 3, "is_output_layer": True},
        "src": {"class": "source", "from": "none", "data_key": "classes", "is_output_layer": True},
    }, extern_data=EXTERN)
    batch = random_batch(net.extern_data, seed=1)
    out = net(batch)
    np.testing.assert_array_equal(out["src"].numpy(), batch["classes"])
    np.testing.assert_array_equal(out["src"].seq_lens.numpy(), batch.seq_lens("classes"))


def test_network_cycle_names_the_loop():
    with pytest.raises(LayerConfigError, match=r"network has a cycle: a -> b -> a \(only 'prev:' may close a loop\)$"):
        build_network({"output": {"class": "copy", "from": "a"}, "a": {"class": "copy", "from": "b"},
                       "b": {"class": "copy", "from": "a"}}, extern_data=EXTERN)


def test_network_missing_source_lists_defined_layers():
    with pytest.raises(LayerConfigError, match=r"layer 'output'.*no layer 'lstm3'; did you mean 'lstm2'\?; "
                                               r"defined: lstm1, lstm2, output"):
        build_network({"lstm1": {"class": "copy"}, "lstm2": {"class": "copy"},
                       "output": {"class": "copy", "from": "lstm3"}}, extern_data=EXTERN)


def test_network_unknown_class_suggests_close_name():
    with pytest.raises(LayerConfigError, match=r"layer 'output'.*unknown layer class 'linaer'; did you mean 'linear'"):
        build_network({"output": {"class": "linaer", "n_out": 3}}, extern_data=EXTERN)


def test_network_unknown_option_names_layer_and_key():
    with pytest.raises(LayerConfigError, match=r"layer 'out'.*'n_ouy'.*did you mean 'n_out'"):
        build_network({"out": {"class": "linear", "from": "data", "n_ouy": 3, "is_output_layer": True}},
                      extern_data=EXTERN)


def test_network_option_type_checked_before_tf():
    with pytest.raises(LayerConfigError, match=r"layer 'output' \(class \"linear\"\): \"n_out\": expected int \| None, "
                                               r"got '3'"):
        build_network({"output": {"class": "linear", "n_out": "3"}}, extern_data=EXTERN)


def test_network_dim_mismatch_names_both_dims():
    with pytest.raises(LayerConfigError, match=r"layer 'output' \(class \"combine\"\): dim mismatch: "
                                               r"'a:feature'\(3\) of 'a' vs 'b:feature'\(4\) of 'b'"):
        build_network({"a": {"class": "linear", "n_out": 3}, "b": {"class": "linear", "n_out": 4},
                       "output": {"class": "combine", "kind": "add", "from": ["a", "b"]}}, extern_data=EXTERN)


def test_network_n_out_checked_against_output():
    with pytest.raises(LayerConfigError, match=r"layer 'output'.*\"n_out\" 7 does not match the output dim 5"):
        build_network({"output": {"class": "copy", "n_out": 7}}, extern_data=EXTERN)


def test_network_without_roots_is_an_error():
    with pytest.raises(LayerConfigError, match="no 'output' layer"):
        build_network({"a": {"class": "copy"}}, extern_data=EXTERN)


def test_network_wraps_unexpected_errors_once_naming_layer():
    with pytest.raises(LayerConstructionError, match=r"layer 'output'.*call failed: .*") as info:
        net = build_network({"output": {"class": "eval", "eval": "source(0) + tf.zeros([7])"}}, extern_data=EXTERN)
        net(random_batch(net.extern_data))
    assert "layer 'output'" in str(info.value) and str(info.value).count("layer '") == 1


def test_network_params_named_after_layers_and_loadable():
    net = build_network({"hid": {"class": "linear", "n_out": 3},
                         "output": {"class": "softmax", "from": "hid", "loss": "ce"}}, extern_data=EXTERN)
    params = net.get_params()
    assert sorted(params) == ["hid/W", "hid/b", "output/W", "output/b"]
    other = build_network({"hid": {"class": "linear", "n_out": 3},
                           "output": {"class": "softmax", "from": "hid", "loss": "ce"}}, extern_data=EXTERN,
                          random_seed=7)
    assert not np.allclose(other.get_params()["hid/W"].numpy(), params["hid/W"].numpy())
    other.load_params({name: var.numpy() for name, var in params.items()})
    np.testing.assert_array_equal(other.get_params()["hid/W"].numpy(), params["hid/W"].numpy())
    with pytest.raises(LayerConstructionError, match="no values for"):
        other.load_params({"hid/W": params["hid/W"].numpy()})


def test_network_params_deterministic_per_seed_and_name():
    a = build_network({"output": {"class": "linear", "n_out": 3}}, extern_data=EXTERN, random_seed=3)
    b = build_network({"x": {"class": "linear", "n_out": 2, "is_output_layer": True},
                       "output": {"class": "linear", "n_out": 3}}, extern_data=EXTERN, random_seed=3)
    np.testing.assert_array_equal(a.get_params()["output/W"].numpy(), b.get_params()["output/W"].numpy())


def test_network_reuse_params_shares_variables():
    net = build_network({"a": {"class": "linear", "n_out": 5},
                         "output": {"class": "linear", "from": "a", "n_out": 5, "reuse_params": "a"}},
                        extern_data=EXTERN)
    assert net.layers["output"].W is net.layers["a"].W
    assert sorted(net.get_params()) == ["a/W", "a/b"]
    with pytest.raises(LayerConfigError, match=r"\"reuse_params\": param 'W' has shape \(5, 5\), this layer needs "
                                               r"\(5, 3\)"):
        build_network({"a": {"class": "linear", "n_out": 5},
                       "output": {"class": "linear", "from": "data", "n_out": 3, "reuse_params": "a"}},
                      extern_data=EXTERN)


def test_network_trainable_false_and_l2():
    net = build_network({"a": {"class": "linear", "n_out": 3, "trainable": False},
                         "output": {"class": "linear", "from": "a", "n_out": 2, "L2": 0.1}}, extern_data=EXTERN)
    assert {v.name.split(":")[0] for v in net.trainable_variables} == {"output/W", "output/b"}
    w, b = net.layers["output"].W.numpy(), net.layers["output"].b.numpy()
    want = 0.1 * 0.5 * ((w ** 2).sum() + (b ** 2).sum())
    np.testing.assert_allclose(net.total_loss({}).numpy(), want, rtol=1e-5)


@pytest.mark.parametrize("rate", [1.5, 1.0, -0.1])
def test_network_dropout_outside_0_1_names_the_layer_at_build_time(rate):
    with pytest.raises(LayerConfigError, match=rf'layer \'hidden\' \(class "linear"\): "dropout": expected a rate in '
                                               rf'\[0, 1\), got {rate}'):
        build_network({"hidden": {"class": "linear", "from": "data", "n_out": 3, "dropout": rate},
                       "output": {"class": "copy", "from": "hidden"}}, extern_data=EXTERN)


def test_network_shared_activation_and_dropout_training_only():
    net = build_network({"output": {"class": "copy", "activation": "relu", "dropout": 0.5,
                                    "dropout_noise_shape": {"T": 1}}}, extern_data=EXTERN)
    batch = random_batch(net.extern_data, n_batch=4, max_time=9, seed=2)
    np.testing.assert_array_equal(net(batch, train=False)["output"].numpy(), np.maximum(batch["data"], 0))
    out = net(batch, train=True)["output"].numpy()
    x = np.maximum(batch["data"], 0)
    dropped = (out == 0) & (x != 0)
    kept = (out != 0)
    np.testing.assert_allclose(out[kept], 2 * x[kept], rtol=1e-6)
    # noise broadcast over time: per (batch, feature) either all valid nonzero frames dropped or none
    mask = batch.mask("data")
    for b in range(4):
        for f in range(5):
            frames = dropped[b, mask[b], f][x[b, mask[b], f] != 0]
            assert frames.all() or not frames.any()


@register_layer("test_double")
class _DoubleLayer(LayerBase):
    """Test layer: twice its input."""

    example = {"from": "data"}

    class Opts(LayerOpts):
        factor: float = 2.0

    @classmethod
    def out_template(cls, ctx: LayerContext, opts: Opts) -> Data:
        return ctx.input_template()

    def __init__(self, ctx: LayerContext, opts: Opts):
        super().__init__(ctx)
        self.factor = opts.factor

    def __call__(self, sources: Sequence[Data], *, train: bool) -> Data:
        return self.out.with_tensor(sources[0].tensor * self.factor, like=sources[0])


def test_network_config_registered_layer_usable_by_name():
    assert LAYER_CLASSES["test_double"] is _DoubleLayer
    net = build_network({"output": {"class": "test_double", "factor": 3.0}}, extern_data=EXTERN)
    batch = random_batch(net.extern_data)
    np.testing.assert_allclose(net(batch)["output"].numpy(), 3 * batch["data"], rtol=1e-6)
    with pytest.raises(LayerConfigError, match="already registered"):
        register_layer("test_double")(type("Other", (_DoubleLayer,), {}))


def test_network_forward_function_traces_once_for_dynamic_shapes():
    net = build_network({"hid": {"class": "linear", "n_out": 3, "activation": "tanh"},
                         "output": {"class": "softmax", "from": "hid", "loss": "ce"}}, extern_data=EXTERN)
    forward = net.forward_function(["output"])
    for n_batch, max_time in ((2, 5), (4, 9)):
        batch = random_batch(net.extern_data, n_batch=n_batch, max_time=max_time)
        result = forward(net.feed(batch))
        assert result["output"].shape == (n_batch, max_time, 4)
        np.testing.assert_array_equal(result["output:seq_len"].numpy(), batch.seq_lens("data"))
        np.testing.assert_allclose(result["output"].numpy(), net(batch)["output"].numpy(), rtol=1e-5)
    assert forward.experimental_get_tracing_count() == 1


def test_network_missing_batch_key_is_clear():
    net = build_network({"output": {"class": "copy"}}, extern_data=EXTERN)
    with pytest.raises(LayerConstructionError, match="batch has no key 'data'"):
        net({"classes": np.zeros([1, 2], np.int32)})


def test_network_train_step_function_with_targets_traces_once():
    net = build_network({"output": {"class": "softmax", "loss": "ce"}}, extern_data=EXTERN)
    assert sorted(net.input_signature()) == ["data", "data:seq_len"]
    assert sorted(net.input_signature(with_targets=True)) == ["classes", "classes:seq_len", "data", "data:seq_len"]

    @tf.function(input_signature=[net.input_signature(with_targets=True)])
    def loss_fn(batch):
        return net.total_loss(net.loss_values(net(batch, train=True), batch))

    for n_batch, max_time in ((2, 3), (5, 8)):
        batch = random_batch(net.extern_data, n_batch=n_batch, max_time=max_time, seed=n_batch)
        want = net.total_loss(net.loss_values(net(batch), batch)).numpy()
        np.testing.assert_allclose(loss_fn(net.feed(batch, with_targets=True)).numpy(), want, rtol=1e-5)
    assert loss_fn.experimental_get_tracing_count() == 1


class _DatasetBatch:
    """Shaped like returnn.datasets.batching.Batch: .data and .seq_lens dicts."""

    def __init__(self, batch):
        self.data = {key: value for key, value in batch.items() if ":" not in key}
        self.seq_lens = {key: batch.seq_lens(key) for key in self.data}


def test_network_takes_dataset_batch_objects():
    net = build_network({"output": {"class": "softmax", "loss": "ce"}}, extern_data=EXTERN)
    batch = random_batch(net.extern_data, seed=4, pad_value=9.0)
    obj = _DatasetBatch(batch)
    np.testing.assert_array_equal(net(obj)["output"].seq_lens.numpy(), batch.seq_lens("data"))
    np.testing.assert_allclose(net.loss_values(net(obj), obj)["output"].loss.numpy(),
                               net.loss_values(net(batch), batch)["output"].loss.numpy(), rtol=1e-6)
    with pytest.raises(TypeError, match="a batch must be a dict"):
        net([1, 2])


@register_layer("test_gate")
class _GateLayer(LayerBase):
    """Test layer: its input times the layer named by "gate" (an option naming a layer)."""

    example = {"from": "data", "gate": "data"}

    class Opts(LayerOpts):
        gate: str = layer_ref()

    @classmethod
    def out_template(cls, ctx: LayerContext, opts: Opts) -> Data:
        assert ctx.ref_templates[opts.gate].dim == 5  # the network resolved the layer_ref option already
        return ctx.input_template()

    def __init__(self, ctx: LayerContext, opts: Opts):
        super().__init__(ctx)
        self.gate = opts.gate

    def __call__(self, sources: Sequence[Data], *, train: bool, refs) -> Data:
        return self.out.with_tensor(sources[0].tensor * refs[self.gate].tensor, like=sources[0])


def test_network_layer_ref_options_are_built_first_and_passed():
    net = build_network({"output": {"class": "test_gate", "gate": "g"},
                         "g": {"class": "activation", "activation": "sigmoid"}}, extern_data=EXTERN)
    assert list(net.layers) == ["g", "output"]
    batch = random_batch(net.extern_data, seed=1)
    x = batch["data"]
    np.testing.assert_allclose(net(batch)["output"].numpy(), x / (1 + np.exp(-x)), rtol=1e-5)
    with pytest.raises(LayerConfigError, match=r"layer 'output': no layer 'gg'"):
        build_network({"output": {"class": "test_gate", "gate": "gg"}}, extern_data=EXTERN)


def test_network_from_config():
    config = Config({"network": {"output": {"class": "softmax", "loss": "ce"}}, "num_inputs": 3, "num_outputs": 2,
                     "random_seed": 5})
    net = Network.from_config(config)
    assert net.templates["output"].dim == 2 and net.extern_data["data"].dim == 3 and net.random_seed == 5
    with pytest.raises(ConfigError, match=r'config key "network": missing'):
        Network.from_config(Config({"num_inputs": 3}))


RELOADED_CONFIG = '''
from returnn.tf.layers import LayerBase, register_layer

@register_layer("test_reloaded")
class Reloaded(LayerBase):
    """Defined by a config."""

    @classmethod
    def out_template(cls, ctx, opts):
        return ctx.input_template()

    def __call__(self, sources, *, train):
        return self.out.with_tensor(sources[0].tensor, like=sources[0])
'''


def test_register_layer_accepts_a_config_evaluated_again():
    for _ in range(2):
        namespace = {"__name__": "config"}
        exec(RELOADED_CONFIG, namespace)
    assert LAYER_CLASSES["test_reloaded"] is namespace["Reloaded"]
    net = build_network({"output": {"class": "test_reloaded"}}, extern_data=EXTERN)
    assert net.templates["output"].dim == 5


def test_network_reads_lengths_of_every_dynamic_axis():
    net = build_network({"output": {"class": "copy", "from": "data:img"}},
                        extern_data={"img": {"shape": (None, None, 2), "dim": 2}})
    img = np.zeros([2, 4, 3, 2], np.float32)
    out = net({"img": img, "img:seq_len": [4, 2], "img:size2": [3, 1]})["output"]
    width = net.extern_data["img"].dims[2]
    np.testing.assert_array_equal(out.seq_lens.numpy(), [4, 2])
    np.testing.assert_array_equal(out.dyn_sizes[width].numpy(), [3, 1])
    assert sorted(net.input_signature()) == ["img", "img:seq_len", "img:size2"]


def test_network_odd_layer_names_still_name_params():
    net = build_network({"1st-layer": {"class": "rec", "unit": "rnn", "n_out": 2},
                         "output": {"class": "linear", "from": "1st-layer", "n_out": 2}}, extern_data=EXTERN)
    assert sorted(net.get_params()) == ["1st-layer/W", "1st-layer/W_re", "1st-layer/b", "output/W", "output/b"]


def test_network_extern_keys_sharing_a_time_dim_combine():
    time = Dim(None, "time")
    extern = {"data": {"dims": [batch_dim, time, feature_dim(3, "feat")]},
              "classes": {"dims": [batch_dim, time], "sparse_dim": feature_dim(4, "vocab")}}
    net = build_network({"emb": {"class": "embedding", "from": "data:classes", "n_out": 3},
                         "output": {"class": "combine", "kind": "add", "from": ["data", "emb"]}}, extern_data=extern)
    batch = random_batch(net.extern_data, seed=2)
    out = net(batch)
    want = batch["data"] + net.layers["emb"].W.numpy()[batch["classes"]]
    np.testing.assert_allclose(out["output"].numpy(), want, rtol=1e-6)
    with pytest.raises(LayerConfigError, match=r"dim mismatch: 'data:time' of 'data' vs 'classes:time' of 'emb'"):
        build_network({"emb": {"class": "embedding", "from": "data:classes", "n_out": 3},
                       "output": {"class": "combine", "kind": "add", "from": ["data", "emb"]}},
                      extern_data={"data": {"dim": 3}, "classes": {"dim": 4, "sparse": True}})


def _padded_batch():
    return Batch(data={"data": np.ones((2, 3, 4), np.float64), "classes": np.zeros((2, 3), np.int64)},
                 seq_lens={"data": np.array([3, 2]), "classes": np.array([3, 2])},
                 seq_tags=["a", "b"], seq_idx=np.array([0, 1]), chunk_start={})


def test_network_feed_casts_dataset_batch_to_signature_dtypes():
    net = build_network({"output": {"class": "softmax", "from": "data", "loss": "ce"}},
                        extern_data={"data": {"dim": 4}, "classes": {"dim": 5, "sparse": True}})
    feed = net.feed(_padded_batch(), with_targets=True)
    assert feed["data"].dtype == np.float32 and feed["classes"].dtype == np.int32
    assert feed["data:seq_len"].tolist() == [3, 2]


def test_network_feed_missing_key_names_keys():
    net = build_network({"output": {"class": "copy", "from": "data:orth"}},
                        extern_data={"data": {"dim": 4}, "orth": {"dim": 5, "sparse": True}})
    with pytest.raises(DatasetError, match="no data key 'orth'.*it has: data, classes"):
        net.feed(_padded_batch())


def test_network_loop_layer_reading_only_prev_of_its_dependents_gets_a_first_guess():
    """RETURNN's att-copy decoder: ``dt_in`` reads only ``prev:`` of layers that depend on it."""
    unit = {"a": {"class": "linear", "from": ["prev:b", "prev:output"], "n_out": 4, "activation": "tanh"},
            "b": {"class": "linear", "from": "a", "n_out": 2},
            "output": {"class": "linear", "from": ["a", "b"], "n_out": 3, "activation": "tanh"}}
    net = build_network({"output": {"class": "rec", "from": "data", "unit": unit, "optimize_move_layers_out": False}},
                        extern_data=EXTERN)
    params = {name: var.numpy() for name, var in net.get_params().items()}
    assert params["output/a/W"].shape == (5, 4)  # from the real prev:b and prev:output (2 + 3), not the guesses
    batch = random_batch(net.extern_data, n_batch=2, max_time=4, seed=3)
    got = np.transpose(net(batch)["output"].numpy(), (1, 0, 2))
    (wa, ba), (wb, bb), (wo, bo) = [(params[f"output/{k}/W"], params[f"output/{k}/b"]) for k in ("a", "b", "output")]
    prev_b, prev_out = np.zeros((2, 2)), np.zeros((2, 3))
    for t in range(4):
        a = np.tanh(np.concatenate([prev_b, prev_out], -1) @ wa + ba)
        prev_b = a @ wb + bb
        prev_out = np.tanh(np.concatenate([a, prev_b], -1) @ wo + bo)
        valid = t < batch.seq_lens("data")
        np.testing.assert_allclose(got[valid, t], prev_out[valid], rtol=1e-5, atol=1e-6)


def test_network_unknown_class_inside_a_rec_unit_names_the_sublayer():
    with pytest.raises(LayerConfigError, match=r"layer 'dec/output'.*unknown layer class 'choise'; did you mean"):
        build_network({"output": {"class": "copy", "from": "dec"},
                       "dec": {"class": "rec", "from": "data", "unit": {
                           "output": {"class": "choise", "from": "data:source"}}}}, extern_data=EXTERN)


def test_tfnetwork_is_network_and_get_layer_names_the_built_layers():
    from returnn.tf.network import TFNetwork
    net = build_network({"output": {"class": "linear", "from": "data", "n_out": 3}}, extern_data={"data": {"dim": 5}})
    assert TFNetwork is Network and net.get_layer("output").out.dim == 3
    with pytest.raises(LayerConfigError, match="get_layer: no layer 'outt'.*built layers: output"):
        net.get_layer("outt")


def test_only_on_search_layer_built_only_in_a_search_network():
    net_dict = {"output": {"class": "softmax", "from": "data", "loss": "ce"},
                "search_out": {"class": "linear", "from": "data", "n_out": 3, "is_output_layer": True,
                               "only_on_search": True}}
    extern = {"data": {"dim": 5}, "classes": {"dim": 4, "sparse": True}}
    assert set(Network(net_dict, extern_data=extern).layers) == {"output"}
    searched = Network(net_dict, extern_data=extern, options={"search": True})
    assert set(searched.layers) == {"output", "search_out"}


def test_only_on_search_layer_read_without_search_names_reader():
    net_dict = {"hid": {"class": "linear", "from": "data", "n_out": 3, "only_on_search": True},
                "output": {"class": "softmax", "from": "hid", "loss": "ce"}}
    extern = {"data": {"dim": 5}, "classes": {"dim": 4, "sparse": True}}
    with pytest.raises(LayerConfigError, match=r"layer 'hid': \"only_on_search\".*without search.*read by 'output'"):
        Network(net_dict, extern_data=extern)
