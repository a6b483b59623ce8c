"""Task export: the SavedModel reloaded in a process that cannot import our package (only the native op library
is loaded) gives the outputs of our forward (1e-5) and search (same hypotheses, scores to 1e-5)."""

from __future__ import annotations

import os
import subprocess
import sys

import numpy as np
import pytest
import tensorflow as tf

from returnn.config import Config
from returnn.errors import ConfigError
from returnn.tasks import run_task
from returnn.tensor.extern_data import seq_len_key
from returnn.testing import blstm_net_dict, random_batch
from returnn.tf.engine import Engine
from returnn.tf.export import NATIVE_OPS_DIR, beam_layer, export_model, has_choice_layer, signature_key
from returnn.tf.search import _hypotheses, search_function

from test_search_task import BEAM, search_config  # noqa: E402  (tests/tf is on sys.path under pytest)

# Runs in a fresh interpreter: blocks our package (installed, it would be importable), loads the op libraries
# shipped with the export, runs each signature on the inputs of an .npz and writes the outputs to another.
_RELOAD = """
import glob, os, sys
sys.modules["returnn"] = None
try:
    import returnn
    raise SystemExit("returnn is importable")
except ImportError:
    pass
import numpy as np, tensorflow as tf
export_dir, inputs, outputs = sys.argv[1:4]
for path in glob.glob(os.path.join(export_dir, "native_ops", "*.so")):
    tf.load_op_library(path)
model = tf.saved_model.load(export_dir)
feed = np.load(inputs)
result = {}
for name in sorted({key.split("/", 1)[0] for key in feed.files}):
    function = model.signatures[name]
    args = {key.split("/", 1)[1]: tf.constant(value) for key, value in feed.items() if key.startswith(name + "/")}
    result.update({name + "/" + key: value.numpy() for key, value in function(**args).items()})
np.savez(outputs, **result)
assert not any(name == "returnn" or name.startswith("returnn.") for name, mod in sys.modules.items() if mod)
"""


def _reload_and_run(export_dir, feeds: dict[str, dict[str, np.ndarray]], tmp_path) -> dict[str, np.ndarray]:
    """Run the signatures ``feeds`` names in a subprocess that only has TensorFlow; ``{"sig/output": array}``."""
    inputs, outputs = tmp_path / "inputs.npz", tmp_path / "outputs.npz"
    np.savez(inputs, **{f"{sig}/{signature_key(key)}": value
                        for sig, feed in feeds.items() for key, value in feed.items()})
    env = {key: value for key, value in os.environ.items() if key != "PYTHONPATH"}
    proc = subprocess.run([sys.executable, "-I", "-c", _RELOAD, str(export_dir), str(inputs), str(outputs)],
                          env=env, cwd=str(tmp_path), capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr[-3000:]
    with np.load(outputs) as result:
        return dict(result)


def _batch_major(template, value: np.ndarray) -> np.ndarray:
    order = [template.batch_dim_axis, template.time_dim_axis]
    return np.transpose(value, order + [i for i in range(value.ndim) if i not in order])


@pytest.fixture
def blstm_config(tmp_path) -> dict:
    """A 2-layer BLSTM with the native op, its random params saved as model.001."""
    config = {"extern_data": {"data": {"dim": 5}, "classes": {"dim": 4, "sparse": True}},
              "network": blstm_net_dict(layers=2, n_out=6, unit="nativelstm"),
              "model": str(tmp_path / "am"), "log_verbosity": 2}
    Engine(Config(config)).save_model(1)
    return config


def test_export_blstm_reloads_without_our_package_and_matches_forward(blstm_config, tmp_path):
    export_dir = tmp_path / "export"
    run_task(Config(dict(blstm_config, task="export", load_epoch=1, export_dir=str(export_dir))))
    assert [name.startswith("native_lstm") for name in os.listdir(export_dir / NATIVE_OPS_DIR)] == [True]
    engine = Engine(Config(blstm_config), output_layer="output")
    engine.load_for_inference()
    net = engine.network
    batch = net.feed(random_batch(net.extern_data, n_batch=3, max_time=7, seed=2))
    want = net.forward_function(["output"])(batch)
    got = _reload_and_run(export_dir, {"serving_default": batch}, tmp_path)
    lens = want[seq_len_key("output")].numpy()
    np.testing.assert_array_equal(got["serving_default/output_seq_len"], lens)
    expected = _batch_major(net.templates["output"], want["output"].numpy())
    mask = np.arange(expected.shape[1])[None, :] < lens[:, None]
    np.testing.assert_allclose(got["serving_default/output"][mask], expected[mask], rtol=1e-5, atol=1e-6)


def test_export_search_signature_gives_the_nbest_of_our_search(tmp_path):
    config = search_config(tmp_path, task="train")
    Engine(Config(config)).save_model(1)
    export_dir = tmp_path / "export"
    export_model(Config(dict(config, task="export", load_epoch=1)), str(export_dir))
    engine = Engine(Config(search_config(tmp_path)), search=True, output_layer="output")
    engine.load_for_inference()
    net = engine.network
    batch = net.feed(random_batch(net.extern_data, n_batch=3, max_time={"data": 5, "classes": 5}, seed=4))
    out = {key: value.numpy() for key, value in search_function(net, "output")(batch).items()}
    got = _reload_and_run(export_dir, {"search": batch}, tmp_path)
    variables = tf.train.list_variables(str(export_dir / "variables" / "variables"))
    assert len([name for name, _ in variables if name.startswith("params/")]) == 12  # shared by both nets: once
    assert got["search/hyps"].shape[:2] == (3, BEAM)
    for i in range(3):
        for k, (score, labels) in enumerate(_hypotheses(out, i, BEAM)):
            length = int(got["search/hyp_lens"][i, k])
            np.testing.assert_array_equal(got["search/hyps"][i, k, :length], labels)
            np.testing.assert_allclose(got["search/scores"][i, k], score, rtol=1e-5)


def test_search_signature_of_a_decide_layer_gives_the_beam_it_decides_from(tmp_path):
    net_dict = search_config(tmp_path)["network"]
    assert beam_layer(net_dict, "best") == "output" and beam_layer(net_dict, "output") == "output"


def test_has_choice_layer_looks_into_rec_units(tmp_path):
    assert has_choice_layer(search_config(tmp_path)["network"])
    assert not has_choice_layer(blstm_net_dict(layers=1, n_out=2))


def test_export_without_export_dir_names_the_key(blstm_config):
    with pytest.raises(ConfigError, match='"export_dir"'):
        export_model(Config(dict(blstm_config, task="export")))


def test_export_of_a_missing_epoch_names_the_checkpoints(blstm_config, tmp_path):
    with pytest.raises(ConfigError, match="load_epoch 7 is not among them"):
        export_model(Config(dict(blstm_config, task="export", load_epoch=7)), str(tmp_path / "export"))
    assert not (tmp_path / "export").exists()


def test_export_without_extern_data_says_where_the_inputs_come_from(blstm_config):
    config = {key: value for key, value in blstm_config.items() if key != "extern_data"}
    with pytest.raises(ConfigError, match='needs "extern_data"'):
        export_model(Config(dict(config, task="export", load_epoch=1)), "unused")
