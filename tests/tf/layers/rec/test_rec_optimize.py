"""The loop optimizer (optimize_move_layers_out): sublayers leave the loop where they can, and nothing
changes but speed: outputs, losses and gradients are those of the net run entirely step by step."""

import numpy as np
import pytest
import tensorflow as tf

from returnn.errors import LayerConfigError
from returnn.testing import random_batch
from returnn.tf.network import Network

EXTERN = {"data": {"dim": 3}, "classes": {"dim": 4, "sparse": True}}


def _decoder_unit():
    """Input side (emb, pre, a cell reading only those), a recurrence (s), an output side (out2, prob)."""
    return {
        "emb": {"class": "linear", "from": "data:classes", "n_out": 5},
        "pre": {"class": "linear", "from": "data:source", "activation": "tanh", "n_out": 4},
        "cell": {"class": "rec", "unit": "lstm", "from": ["prev:emb", "pre"], "n_out": 6},
        "s": {"class": "linear", "activation": "tanh", "from": ["prev:s", "cell"], "n_out": 6, "initial_output": "var"},
        "out2": {"class": "linear", "from": ["s", "prev:s", "pre"], "n_out": 6},
        "prob": {"class": "softmax", "from": "out2", "loss": "ce", "target": "classes"},
        "output": {"class": "copy", "from": "out2"},
    }


def _target_driven_unit():
    """enc-dec style: the recurrence reads only the previous target, so nothing needs the loop."""
    return {
        "emb": {"class": "linear", "from": "data:classes", "n_out": 5, "activation": None},
        "s": {"class": "rec", "unit": "lstm", "from": ["prev:emb", "base:enc_last"], "n_out": 6},
        "prob": {"class": "softmax", "from": "s", "loss": "ce", "target": "classes"},
        "output": {"class": "copy", "from": "s"},
    }


def _layer_norm_unit():
    """layer_norm on the recurrence (stays in the loop) and on the output side (moves out, as a frame-wise layer)."""
    return {
        "s": {"class": "linear", "activation": "tanh", "from": ["prev:s_ln", "data:source"], "n_out": 6},
        "s_ln": {"class": "layer_norm", "from": "s"},
        "out2": {"class": "linear", "from": ["s_ln", "data:source"], "n_out": 6},
        "out_ln": {"class": "layer_norm", "from": "out2"},
        "prob": {"class": "softmax", "from": "out_ln", "loss": "ce", "target": "classes"},
        "output": {"class": "copy", "from": "out_ln"},
    }


def _attention_unit():
    """An attention decoder with a loop-invariant map of the encoder inside the unit (computed once)."""
    return {
        "emb": {"class": "linear", "from": "data:classes", "n_out": 5},
        "enc_ctx": {"class": "linear", "from": "base:enc", "n_out": 6},
        "s": {"class": "rec", "unit": "lstm", "from": ["prev:emb", "prev:att"], "n_out": 6},
        "energy": {"class": "dot", "from": ["s", "enc_ctx"], "red1": "F", "red2": "F", "var1": None, "var2": "T"},
        "att_weights": {"class": "softmax_over_spatial", "from": "energy"},
        "att": {"class": "generic_attention", "weights": "att_weights", "base": "base:enc"},
        "prob": {"class": "softmax", "from": ["s", "att"], "loss": "ce", "target": "classes"},
        "output": {"class": "copy", "from": "att"},
    }


def _self_attention_unit():
    """A transformer-style decoder: causal self-attention over the previous targets, which needs no loop."""
    return {
        "emb": {"class": "linear", "from": "data:classes", "n_out": 8},
        "pos": {"class": "positional_encoding", "from": "prev:emb", "add_to_input": True},
        "sa": {"class": "self_attention", "from": "pos", "attention_left_only": True, "num_heads": 2,
               "total_key_dim": 8, "n_out": 8},
        "sum": {"class": "cumsum", "from": "sa"},
        "prob": {"class": "softmax", "from": ["sa", "sum", "base:enc_last"], "loss": "ce", "target": "classes"},
        "output": {"class": "copy", "from": "sa"},
    }


def _net(unit, optimize, *, from_=("data",)):
    net_dict = {"enc": {"class": "linear", "from": "data", "n_out": 3},
                "enc_last": {"class": "reduce", "mode": "max", "axes": "T", "from": "enc"},
                "dec": {"class": "rec", "from": list(from_), "unit": unit, "target": "classes",
                        "optimize_move_layers_out": optimize},
                "output": {"class": "softmax", "from": "dec", "loss": "ce"}}
    return Network(net_dict, extern_data=EXTERN)


def _parts(net):
    return [sorted(n.templates) for n in net.layers["dec"].loop.plan.networks()]


def _run(net, batch):
    params = net.get_params()
    names = sorted(params)
    with tf.GradientTape() as tape:
        out = net(batch, train=False)
        losses = net.loss_values(out, batch)
        total = net.total_loss(losses)
    grads = tape.gradient(total, [params[n] for n in names])
    return out, {k: float(v.loss) for k, v in losses.items()}, {n: tf.convert_to_tensor(g).numpy()
                                                               for n, g in zip(names, grads)}


@pytest.mark.parametrize("unit, from_", [(_decoder_unit, ("data",)), (_target_driven_unit, ()),
                                         (_layer_norm_unit, ("data",))],
                         ids=["decoder", "target_driven", "layer_norm"])
def test_optimize_on_and_off_give_equal_outputs_losses_and_gradients(unit, from_):
    on, off = _net(unit(), True, from_=from_), _net(unit(), False, from_=from_)
    assert sorted(on.get_params()) == sorted(off.get_params())
    off.load_params({k: v.numpy() for k, v in on.get_params().items()})
    batch = random_batch(on.extern_data, n_batch=3, max_time=6, seed=3)
    out_on, loss_on, grad_on = _run(on, batch)
    out_off, loss_off, grad_off = _run(off, batch)
    np.testing.assert_allclose(out_on["dec"].numpy(), out_off["dec"].numpy(), rtol=1e-5, atol=1e-6)
    np.testing.assert_array_equal(out_on["dec"].seq_lens.numpy(), out_off["dec"].seq_lens.numpy())
    assert loss_on.keys() == loss_off.keys() == {"output", "dec/prob"}
    for key in loss_on:
        np.testing.assert_allclose(loss_on[key], loss_off[key], rtol=1e-5)
    for name in grad_on:
        np.testing.assert_allclose(grad_on[name], grad_off[name], rtol=1e-4, atol=1e-6, err_msg=name)
        assert np.any(grad_on[name] != 0), name


def test_optimize_moves_input_and_output_side_out_and_keeps_the_recurrence():
    assert _parts(_net(_decoder_unit(), True)) == [["cell", "emb", "pre"], ["s"], ["out2", "output", "prob"]]
    assert _parts(_net(_decoder_unit(), False)) == [["cell", "emb", "out2", "output", "pre", "prob", "s"]]
    assert _parts(_net(_layer_norm_unit(), True)) == [["s", "s_ln"], ["out2", "out_ln", "output", "prob"]]


def test_optimize_computes_loop_invariant_and_causal_sublayers_outside():
    assert _parts(_net(_attention_unit(), True, from_=())) == [
        ["emb", "enc_ctx"], ["att", "att_weights", "energy", "s"], ["output", "prob"]]
    assert _parts(_net(_self_attention_unit(), True, from_=())) == [["emb", "output", "pos", "prob", "sa", "sum"]]  # no loop


def test_optimize_runs_a_target_driven_recurrence_as_one_whole_sequence_unit():
    net = _net(_target_driven_unit(), True, from_=())
    plan = net.layers["dec"].loop.plan
    assert plan.loop is None  # no tf.while_loop at all
    assert not plan.before.layers["s"].steps  # the lstm runs over the whole sequence (native kernel)


def test_optimize_default_comes_from_the_config_key():
    net_dict = {"dec": {"class": "rec", "from": "data", "unit": _decoder_unit()},
                "output": {"class": "softmax", "from": "dec", "loss": "ce"}}
    off = Network(net_dict, extern_data=EXTERN, options={"optimize_move_layers_out": False})
    assert len(_parts(off)) == 1
    assert len(_parts(Network(net_dict, extern_data=EXTERN))) == 3


def test_optimized_loop_traces_once():
    net = _net(_decoder_unit(), True)
    forward = net.forward_function(["dec"])
    for n_batch, max_time in ((2, 4), (3, 7)):
        forward(net.feed(random_batch(net.extern_data, n_batch=n_batch, max_time=max_time, seed=n_batch)))
    assert forward.experimental_get_tracing_count() == 1


def test_a_rec_layer_with_a_loss_inside_is_built_without_output_name():
    net = Network({"enc": {"class": "linear", "from": "data", "n_out": 3},
                   "dec": {"class": "rec", "from": "enc", "unit": {
                       "output": {"class": "linear", "from": ["prev:output", "data:source"], "n_out": 4},
                       "prob": {"class": "softmax", "from": "output", "loss": "ce", "target": "classes"}}},
                   "output": {"class": "copy", "from": "enc"}}, extern_data=EXTERN)
    batch = random_batch(net.extern_data, n_batch=2, max_time=3, seed=1)
    assert set(net.loss_values(net(batch), batch)) == {"dec/prob"}


def test_end_may_be_a_scalar_for_all_sequences_and_must_be_bool():
    unit = {"output": {"class": "linear", "from": "prev:output", "n_out": 2, "initial_output": "ones"},
            "end": {"class": "compare", "from": ":i", "kind": "greater_equal", "value": 2}}
    net = Network({"dec": {"class": "rec", "from": [], "max_seq_len": 5, "unit": unit, "is_output_layer": True}},
                  extern_data=EXTERN)
    out = net(random_batch(net.extern_data, n_batch=3, max_time=4, seed=2))["dec"]
    np.testing.assert_array_equal(out.seq_lens.numpy(), [2, 2, 2])
    bad = {**unit, "end": {"class": "linear", "from": "output", "n_out": 1}}
    with pytest.raises(LayerConfigError, match=r"layer 'dec' \(class \"rec\"\): sublayer \"end\": expected a bool per "
                                        r"sequence"):
        Network({"dec": {"class": "rec", "from": [], "max_seq_len": 5, "unit": bad, "is_output_layer": True}},
                extern_data=EXTERN)
