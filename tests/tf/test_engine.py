"""Engine end to end on tiny configs: training, restart, eval, forward, non-finite loss, kills."""

from __future__ import annotations

import logging
import os
import signal
import subprocess
import sys

import numpy as np
import pytest
import tensorflow as tf

from returnn.config import Config
from returnn.errors import ConfigError, DatasetError
from returnn.log import STEP, logger
from returnn.lr_control import read_learning_rate_file
from returnn.tf import checkpoint as ckpt
from returnn.tf.engine import Engine, NonFiniteScoreError
from returnn.tf.engine_tasks import run_eval, run_train
from returnn.testing import captured_log

from test_checkpoint import truncate_data_file

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def tiny_config(tmp_path, **overrides) -> dict:
    values = {
        "task": "train",
        "train": {"class": "Task12AXDataset", "num_seqs": 60, "fixed_random_seed": 3},
        "dev": {"class": "Task12AXDataset", "num_seqs": 20, "fixed_random_seed": 1},
        "num_inputs": 9, "num_outputs": 2,
        "batch_size": 1000, "max_seqs": 10,
        "network": {"hidden": {"class": "linear", "activation": "tanh", "n_out": 16, "from": "data"},
                    "output": {"class": "softmax", "loss": "ce", "from": "hidden"}},
        "adam": True, "learning_rate": 0.01, "learning_rate_control": "newbob",
        "model": str(tmp_path / "out" / "net"), "learning_rate_file": str(tmp_path / "out" / "lr"),
        "num_epochs": 2, "log_verbosity": 2,
    }
    values.update(overrides)
    return values


def test_engine_trains_saves_and_writes_learning_rate_file(tmp_path):
    run_train(Config(tiny_config(tmp_path)))
    model = str(tmp_path / "out" / "net")
    assert ckpt.existing_epochs(model) == [1, 2]
    data = read_learning_rate_file(str(tmp_path / "out" / "lr"))
    assert sorted(data) == [1, 2]
    meta = {":meta:global_train_step", ":meta:effective_learning_rate", ":meta:epoch_num_train_steps",
            ":meta:epoch_train_time_secs"}  # written (and read) by RETURNN as well
    assert set(data[2].error) == {"train_score", "train_error", "dev_score", "dev_error"} | meta
    assert data[2].error["train_score"] < data[1].error["train_score"]
    steps = data[1].error[":meta:epoch_num_train_steps"]
    assert steps > 0 and data[1].error[":meta:global_train_step"] == 0 and data[2].error[":meta:global_train_step"] == steps
    assert data[2].error[":meta:effective_learning_rate"] == pytest.approx(data[2].learning_rate)
    names = ckpt.read_checkpoint(ckpt.epoch_checkpoint_prefix(model, 2))
    assert {"hidden/W", "output/W", "updater/global_train_step", "updater/optimizer/hidden.W/m"} <= set(names)
    assert os.listdir(tmp_path / "out" / "tensorboard")


def test_engine_restart_resumes_after_last_epoch_and_eval_reproduces_dev_score(tmp_path):
    run_train(Config(tiny_config(tmp_path)))
    steps_after_2 = ckpt.read_checkpoint(str(tmp_path / "out" / "net.002"))["updater/global_train_step"]
    run_train(Config(tiny_config(tmp_path, num_epochs=3)))
    model = str(tmp_path / "out" / "net")
    assert ckpt.existing_epochs(model) == [1, 2, 3]
    steps_after_3 = ckpt.read_checkpoint(str(tmp_path / "out" / "net.003"))["updater/global_train_step"]
    assert steps_after_3 == 3 * steps_after_2 / 2  # epoch 3 alone was trained, continuing the step counter
    dev_score = read_learning_rate_file(str(tmp_path / "out" / "lr"))[3].error["dev_score"]
    results = run_eval(Config(tiny_config(tmp_path, task="eval")))
    assert results["dev"]["dev_score"]["cost:output"] == pytest.approx(dev_score, rel=1e-5)


def test_engine_nonfinite_loss_stops_with_step_and_keeps_checkpoint(tmp_path):
    network = {"hidden": {"class": "linear", "activation": "tanh", "n_out": 16, "from": "data"},
               "broken": {"class": "eval", "from": "hidden", "eval": "tf.math.log(source(0) - source(0))"},
               "output": {"class": "softmax", "loss": "ce", "from": "broken"}}
    config = tiny_config(tmp_path, network=network)
    with pytest.raises(NonFiniteScoreError, match=r"epoch 1, step \d+: the training loss is (nan|inf)"):
        run_train(Config(config))
    assert ckpt.existing_epochs(str(tmp_path / "out" / "net")) == []


def test_engine_preload_and_import_model_by_name(tmp_path):
    run_train(Config(tiny_config(tmp_path, num_epochs=1)))
    source = ckpt.read_checkpoint(str(tmp_path / "out" / "net.001"))
    other = tmp_path / "other"
    config = tiny_config(other, preload_from_files={"base": {"filename": str(tmp_path / "out" / "net.001"),
                                                             "ignore_missing": True}})
    engine = Engine(Config(config))
    engine.init_train()
    np.testing.assert_array_equal(engine.network.get_params()["hidden/W"].numpy(), source["hidden/W"])


def test_engine_dev_error_keeps_trained_epoch_and_restart_resumes_at_next_epoch(tmp_path, caplog):
    bad_dev = {"class": "StaticDataset", "input_dim": 9, "output_dim": {"classes": 2},
               "data": [{"data": np.zeros((3, 9), np.float32), "classes": np.array([0, 57, 1], np.int32), "seq_tag": "bad"}]}
    model, lr_file = str(tmp_path / "out" / "net"), str(tmp_path / "out" / "lr")
    logger.addHandler(caplog.handler)
    try:
        with caplog.at_level(logging.INFO, logger="returnn"):
            with pytest.raises(DatasetError, match=r"dataset 'dev', sequence 'bad', key 'classes', frame 1: class index 57"):
                run_train(Config(tiny_config(tmp_path, dev=bad_dev)))
            assert "scoring dev/eval failed; the trained epoch is saved as" in caplog.text
            assert ckpt.existing_epochs(model) == [1]
            assert {e: {k for k in d.error if not k.startswith(":meta:")} for e, d in read_learning_rate_file(lr_file).items()} == {
            1: {"train_score", "train_error"}}
            steps_1 = ckpt.read_checkpoint(model + ".001")["updater/global_train_step"]
            run_train(Config(tiny_config(tmp_path)))  # dev fixed
            assert "Start training at epoch 2 of 2" in caplog.text
    finally:
        logger.removeHandler(caplog.handler)
    assert ckpt.existing_epochs(model) == [1, 2]
    assert ckpt.read_checkpoint(model + ".002")["updater/global_train_step"] == 2 * steps_1
    history = read_learning_rate_file(lr_file)
    assert {k for k in history[1].error if not k.startswith(":meta:")} == {"train_score", "train_error"}
    assert {k for k in history[2].error if not k.startswith(":meta:")} == {"train_score", "train_error", "dev_score", "dev_error"}


def test_engine_resume_skips_truncated_checkpoint_with_warning(tmp_path, caplog):
    run_train(Config(tiny_config(tmp_path)))
    model = str(tmp_path / "out" / "net")
    epoch_1 = ckpt.read_checkpoint(model + ".001")
    truncate_data_file(model + ".002")
    engine = Engine(Config(tiny_config(tmp_path)))
    logger.addHandler(caplog.handler)
    try:
        assert engine.init_train() == 2
    finally:
        logger.removeHandler(caplog.handler)
    assert f"checkpoint '{model}.002' is damaged" in caplog.text and "falling back to the previous checkpoint" in caplog.text
    np.testing.assert_array_equal(engine.network.get_params()["hidden/W"].numpy(), epoch_1["hidden/W"])
    assert int(engine.updater.global_train_step.numpy()) == epoch_1["updater/global_train_step"]
    assert sorted(engine.lr_control.epoch_data[2].error) == []  # its scores are forgotten: epoch 2 is trained again
    truncate_data_file(model + ".001")
    with pytest.raises(ckpt.CheckpointDamagedError, match=r"no checkpoint of model .* can be read \(epochs 1, 2 all damaged\)"):
        Engine(Config(tiny_config(tmp_path))).init_train()


KILL_SCRIPT = """
import os, signal, sys
sys.path.insert(0, {root!r})
from returnn.tf import checkpoint, steps
from returnn.__main__ import main
mode, kill_epoch = sys.argv[1], int(sys.argv[2])
if mode == "save":
    original = os.replace
    def replace(src, dst):
        if dst.endswith(".%03d.index" % kill_epoch):
            os.kill(os.getpid(), signal.SIGKILL)  # data file moved, index not yet: killed mid-save
        return original(src, dst)
    checkpoint.os.replace = replace
elif mode == "epoch":
    make = steps.make_train_step
    def make_killing(*args, **kwargs):
        step = make(*args, **kwargs)
        calls = []
        def killing(feed):
            calls.append(1)
            if len(calls) == 3 + 4 * (kill_epoch - 1):
                os.kill(os.getpid(), signal.SIGKILL)
            return step(feed)
        return killing
    import returnn.tf.engine as engine
    engine.make_train_step = make_killing
sys.exit(main(sys.argv[3:]))
"""


@pytest.mark.slow
@pytest.mark.parametrize("mode", ["epoch", "save"])
def test_engine_sigkill_then_rerun_resumes_from_last_complete_epoch(tmp_path, mode):
    script = tmp_path / "kill.py"
    script.write_text(KILL_SCRIPT.format(root=ROOT))
    config_path = tmp_path / "setup.config"
    values = tiny_config(tmp_path, num_epochs=3, batch_size=300)
    config_path.write_text("#!rnn.py\n" + "".join(f"{k} = {v!r}\n" for k, v in values.items()))
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2")
    killed = subprocess.run([sys.executable, str(script), mode, "2", str(config_path)], env=env, capture_output=True,
                            text=True, timeout=300)
    assert killed.returncode == -signal.SIGKILL, killed.stderr
    model = str(tmp_path / "out" / "net")
    assert ckpt.existing_epochs(model) == [1]
    rerun = subprocess.run([sys.executable, os.path.join(ROOT, "rnn.py"), str(config_path)], env=env,
                           capture_output=True, text=True, timeout=300)
    assert rerun.returncode == 0, rerun.stderr
    assert "Start training at epoch 2 of 3" in rerun.stdout
    assert ckpt.existing_epochs(model) == [1, 2, 3]
    assert not [f for f in os.listdir(tmp_path / "out") if ".tmp-" in f]
    history = read_learning_rate_file(str(tmp_path / "out" / "lr"))
    reference_dir = tmp_path / "reference"
    run_train(Config(tiny_config(reference_dir, num_epochs=3, batch_size=300)))
    reference = read_learning_rate_file(str(reference_dir / "out" / "lr"))
    assert sorted(history) == sorted(reference) == [1, 2, 3]
    assert [history[e].learning_rate for e in history] == [reference[e].learning_rate for e in reference]
    for epoch in history:
        assert set(history[epoch].error) == set(reference[epoch].error)


def test_engine_dynamic_learning_rate_function_per_step(tmp_path):
    seen = []

    def dynamic_learning_rate(*, global_train_step, epoch, learning_rate, **kwargs):
        seen.append((global_train_step, epoch, learning_rate))
        return learning_rate * min(1.0, (global_train_step + 1) / 4)  # linear warm-up over 4 steps

    engine = Engine(Config(tiny_config(tmp_path, num_epochs=1, dynamic_learning_rate=dynamic_learning_rate)))
    engine.train()
    assert [s[0] for s in seen] == list(range(len(seen))) and len(seen) >= 4
    assert all(e == 1 and lr == 0.01 for _, e, lr in seen)
    assert float(engine.updater.learning_rate.numpy()) == pytest.approx(0.01)


def test_engine_steps_trace_once_over_batches_of_different_shapes(tmp_path):
    engine = Engine(Config(tiny_config(tmp_path, num_epochs=2, batch_size=150, max_seqs=7)))
    with captured_log() as records:  # warn_on_retrace says "... step was traced N times"
        engine.train()
    assert records and not [r for r in records if "traced" in r.getMessage()]
    assert engine._eval_step.experimental_get_tracing_count() == 1


def test_engine_jit_compile_train_step(tmp_path):
    fixed_length = {"class": "DummyDataset", "input_dim": 9, "output_dim": 2, "num_seqs": 12, "seq_len": 5}
    engine = Engine(Config(tiny_config(tmp_path, num_epochs=1, jit_compile=True, train=fixed_length, dev=None,
                                       batch_size=20, max_seqs=4)))  # one batch shape: XLA compiles per shape
    engine.train()
    assert ckpt.existing_epochs(str(tmp_path / "out" / "net")) == [1]


@pytest.mark.slow
def test_engine_lstm_learns_12ax_task(tmp_path):
    network = {"lstm0": {"class": "rec", "unit": "nativelstm", "n_out": 32, "from": "data"},
               "output": {"class": "softmax", "loss": "ce", "from": "lstm0"}}
    config = tiny_config(tmp_path, network=network, num_epochs=6, learning_rate=0.01, batch_size=2000, max_seqs=20,
                         learning_rate_control="constant", gradient_clip_global_norm=5.0,
                         train={"class": "Task12AXDataset", "num_seqs": 500, "fixed_random_seed": 3},
                         dev={"class": "Task12AXDataset", "num_seqs": 50, "fixed_random_seed": 1})
    run_train(Config(config))
    history = read_learning_rate_file(str(tmp_path / "out" / "lr"))
    assert history[6].error["dev_error"] < 0.02  # the majority-class baseline is at 0.16


def test_engine_log_batch_size_and_memory_usage_keys(tmp_path):
    engine = Engine(Config(tiny_config(tmp_path, num_epochs=1, log_batch_size=True, tf_log_memory_usage=True)))
    records: list[logging.LogRecord] = []
    handler = logging.Handler(STEP)
    handler.emit = records.append
    old_level = logger.level
    logger.setLevel(STEP)
    logger.addHandler(handler)
    try:
        engine.train()
    finally:
        logger.removeHandler(handler)
        logger.setLevel(old_level)
    lines = [record.getMessage() for record in records]
    steps = [line for line in lines if line.startswith("ep 1 train, step")]
    assert steps and all("max_size:classes" in line and "max_size:data" in line for line in steps)
    if tf.config.list_logical_devices("GPU"):
        assert all("mem_usage:GPU:0" in line for line in steps)
    else:
        assert sum("tf_log_memory_usage: no GPU here" in line for line in lines) == 1


def test_engine_use_last_best_model_continues_from_best_epoch(tmp_path):
    options = {"modulo": 2, "filter_score": 1.5, "only_last_n": 5, "min_score_dist": 0.2}
    run_train(Config(tiny_config(tmp_path, num_epochs=3)))
    engine = Engine(Config(tiny_config(tmp_path, num_epochs=5, use_last_best_model=options)))
    engine.init_train()
    scores = {1: 0.3, 2: 0.9, 3: 0.6}  # pretend epoch 3 is worse than epoch 1 by more than min_score_dist
    for epoch, score in scores.items():
        engine.lr_control.epoch_data[epoch].error["dev_score"] = score
    engine.updater.optimizer.iterations.assign(7)
    engine._maybe_use_last_best_model(5, options)  # 5 % modulo != 0 and 0.6 <= filter_score: not checked
    assert int(engine.updater.optimizer.iterations.numpy()) == 7
    engine._maybe_use_last_best_model(4, options)
    assert int(engine.updater.optimizer.iterations.numpy()) == 0
    want = ckpt.read_checkpoint(str(tmp_path / "out" / "net.001"))
    for name, var in engine.network.get_params().items():
        np.testing.assert_array_equal(var.numpy(), want[name])
    engine.lr_control.epoch_data[3].error["dev_score"] = 0.45  # within min_score_dist of the best: keep epoch 3
    engine.load_model(str(tmp_path / "out" / "net.003"), params_only=True)
    engine._maybe_use_last_best_model(4, options)
    np.testing.assert_array_equal(engine.network.get_params()["output/W"].numpy(),
                                  ckpt.read_checkpoint(str(tmp_path / "out" / "net.003"))["output/W"])


@pytest.mark.parametrize("value, match", [
    ({"modullo": 5}, "unknown key 'modullo'"),
    ("yes", "expected True or a dict"),
    ({"modulo": 0}, '"modulo" must be an int >= 1'),
])
def test_engine_use_last_best_model_option_errors(tmp_path, value, match):
    with pytest.raises(ConfigError, match=match):
        run_train(Config(tiny_config(tmp_path, num_epochs=1, use_last_best_model=value)))


def test_engine_bad_cleanup_old_models_fails_before_the_first_epoch(tmp_path):
    config = Config(tiny_config(tmp_path, num_epochs=1, cleanup_old_models={"keep_last_n": "2"}))
    with pytest.raises(ConfigError, match=r'"cleanup_old_models": "keep_last_n" expected an int'):
        run_train(config)
    assert ckpt.existing_epochs(str(tmp_path / "out" / "net")) == []


def test_engine_resume_says_which_learning_rate_it_uses_and_warns_without_its_file(tmp_path):
    run_train(Config(tiny_config(tmp_path, num_epochs=1, learning_rate_control="constant", dev=None)))
    config = Config(tiny_config(tmp_path, num_epochs=2, learning_rate_control="constant", dev=None))
    config.parse_cmd_args(["++learning_rate", "0.5", "++num_epochs", "1"])  # resume: nothing left to train
    with captured_log(logging.INFO) as records:
        Engine(config).init_train()
    lines = [r.getMessage() for r in records]
    assert any("Resuming at epoch 2 with learning rate 0.01 from learning_rate_file" in line
               and "learning_rate 0.5 (from ++learning_rate on the command line) is the initial rate only" in line
               for line in lines), lines
    os.remove(tmp_path / "out" / "lr")
    with captured_log(logging.WARNING) as records:
        Engine(config).init_train()
    assert any("Resuming after epoch 1 (checkpoints exist), but learning_rate_file" in r.getMessage()
               and "does not exist: the learning rate restarts at the initial learning_rate 0.5" in r.getMessage()
               for r in records)
