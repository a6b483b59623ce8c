"""Tests of the fused native LSTM op against a pure-TF reference, plus its build machinery."""

from __future__ import annotations

import importlib
import os
import socket
import stat
import subprocess
import sys
import threading
import time

import numpy as np
import pytest
import tensorflow as tf

from returnn.errors import NativeOpBuildError
from returnn.tf.native_op import build, lstm


@pytest.fixture(scope="module")
def op_module():
    """Load the op once (compiles into the user cache dir the first time, ~30 s)."""
    return lstm.load_native_lstm()


def reference_lstm(z, v, c0, y0, mask, direction, cell_grad_clip=0.0):
    """Masked LSTM as a Python loop of TF ops (gate order j, i, f, o); returns (y, final c, final h)."""

    @tf.custom_gradient
    def clip_grad(c):
        return c, (lambda dc: tf.clip_by_value(dc, -cell_grad_clip, cell_grad_clip)) if cell_grad_clip > 0 else tf.identity

    time = z.shape[0]
    c, h, ys = c0, y0, [None] * time
    for t in (range(time) if direction == 1 else range(time - 1, -1, -1)):
        j, i, f, o = tf.split(z[t] + tf.matmul(h, v), 4, axis=-1)
        c_new = clip_grad(tf.sigmoid(f) * c + tf.sigmoid(i) * tf.tanh(j))
        h_new = tf.sigmoid(o) * tf.tanh(c_new)
        valid = mask[t][:, None] > 0
        c, h = tf.where(valid, c_new, c), tf.where(valid, h_new, h)
        ys[t] = tf.where(valid, h_new, tf.zeros_like(h_new))
    return tf.stack(ys), c, h


def random_inputs(seed: int, time: int, batch: int, n: int, dtype=np.float32):
    """z, v, c0, y0, mask with ragged lengths (one empty sequence when batch > 2)."""
    rng = np.random.default_rng(seed)
    lens = rng.integers(1, time + 1, size=batch)
    lens[0] = time
    if batch > 2:
        lens[2] = 0
    mask = (np.arange(time)[:, None] < lens[None]).astype(dtype)
    arrays = [rng.normal(size=(time, batch, 4 * n)), rng.normal(size=(n, 4 * n)) * 0.5,
              rng.normal(size=(batch, n)), rng.normal(size=(batch, n))]
    return [tf.constant(a.astype(dtype)) for a in arrays] + [tf.constant(mask)]


def outputs_and_grads(fn, inputs, seed: int = 0):
    """Outputs (y, c, h) and gradients of a random weighted sum of them w.r.t. z, v, c0, y0."""
    z, v, c0, y0, mask = inputs
    rng = np.random.default_rng(seed + 100)
    with tf.GradientTape() as tape:
        tape.watch([z, v, c0, y0])
        outs = fn(z, v, c0, y0, mask)
        loss = sum(tf.reduce_sum(o * rng.normal(size=o.shape).astype(o.dtype.as_numpy_dtype)) for o in outs)
    return list(outs) + tape.gradient(loss, [z, v, c0, y0])


@pytest.mark.parametrize("direction", [1, -1])
@pytest.mark.parametrize("seed,time,batch,n", [(0, 7, 5, 6), (1, 13, 3, 17), (2, 1, 1, 3), (3, 20, 8, 33)])
def test_native_lstm_matches_reference_with_gradients(op_module, direction, seed, time, batch, n):
    inputs = random_inputs(seed, time, batch, n)
    got = outputs_and_grads(lambda *a: lstm.native_lstm(*a, direction=direction), inputs, seed)
    want = outputs_and_grads(lambda *a: reference_lstm(*a, direction), inputs, seed)
    names = ["y", "final_c", "final_h", "dz", "dv", "dc0", "dy0"]
    for name, g, w in zip(names, got, want):
        np.testing.assert_allclose(g.numpy(), w.numpy(), rtol=1e-5, atol=1e-5, err_msg=name)
    y = got[0].numpy()
    assert np.all(y[inputs[4].numpy() == 0] == 0)


@pytest.mark.parametrize("direction", [1, -1])
def test_native_lstm_cell_grad_clip_matches_reference(op_module, direction):
    inputs = random_inputs(4, 9, 4, 5)
    got = outputs_and_grads(lambda *a: lstm.native_lstm(*a, direction=direction, cell_grad_clip=0.3), inputs)
    want = outputs_and_grads(lambda *a: reference_lstm(*a, direction, cell_grad_clip=0.3), inputs)
    unclipped = outputs_and_grads(lambda *a: lstm.native_lstm(*a, direction=direction), inputs)
    for g, w in zip(got, want):
        np.testing.assert_allclose(g.numpy(), w.numpy(), rtol=1e-5, atol=1e-5)
    assert not np.allclose(got[3].numpy(), unclipped[3].numpy())


@pytest.mark.parametrize("direction", [1, -1])
def test_native_lstm_numerical_gradient_float64(op_module, direction):
    z, v, c0, y0, mask = random_inputs(5, 5, 3, 4, dtype=np.float64)

    def fn(z, v, c0, y0):
        y, c, h = lstm.native_lstm(z, v, c0, y0, mask, direction=direction)
        return tf.reduce_sum(y * y) + tf.reduce_sum(c * h)

    theoretical, numerical = tf.test.compute_gradient(fn, [z, v, c0, y0], delta=1e-6)
    for t, n in zip(theoretical, numerical):
        np.testing.assert_allclose(t, n, rtol=1e-6, atol=1e-7)


def test_native_lstm_in_tf_function_and_while_loop(op_module):
    z, v, c0, y0, mask = random_inputs(6, 6, 4, 5)

    def chained(step):
        def run(z, v, c0, y0, mask):
            def body(k, c, h, acc):
                y, c, h = step(z, v, c, h, mask)
                return k + 1, c, h, acc + tf.reduce_sum(y, axis=0)
            _, c, h, acc = tf.while_loop(lambda k, *_: k < 3, body, (tf.constant(0), c0, y0, tf.zeros_like(y0)))
            return acc, c, h
        return run

    got = outputs_and_grads(tf.function(chained(lambda *a: lstm.native_lstm(*a, direction=-1))), [z, v, c0, y0, mask])
    want = outputs_and_grads(chained(lambda *a: reference_lstm(*a, -1)), [z, v, c0, y0, mask])
    for g, w in zip(got, want):
        np.testing.assert_allclose(g.numpy(), w.numpy(), rtol=1e-5, atol=1e-5)


def test_native_lstm_gradient_registered_once(op_module):
    lstm._register_gradient()
    reloaded = importlib.reload(lstm)
    reloaded.load_native_lstm()  # a second registration would raise KeyError inside TF
    got = outputs_and_grads(lambda *a: reloaded.native_lstm(*a), random_inputs(7, 3, 2, 2))
    assert all(np.all(np.isfinite(g.numpy())) for g in got)


def test_native_lstm_rejects_bad_shapes(op_module):
    z, v, c0, y0, mask = random_inputs(8, 4, 3, 5)
    with pytest.raises(tf.errors.InvalidArgumentError, match="mask must be"):
        lstm.native_lstm(z, v, c0, y0, mask[:, :2])
    with pytest.raises(ValueError, match="direction"):
        lstm.native_lstm(z, v, c0, y0, mask, direction=0)


def write_fake_compiler(path: str, counter: str) -> str:
    """A 'compiler' that counts its runs and writes an empty library to its -o argument."""
    with open(path, "w", encoding="utf-8") as f:
        f.write(f"#!{sys.executable}\nimport sys, time\nopen({counter!r}, 'a').write('x')\ntime.sleep(0.3)\n"
                "open(sys.argv[sys.argv.index('-o') + 1], 'w').write('lib')\n")
    os.chmod(path, os.stat(path).st_mode | stat.S_IEXEC)
    return path


def test_build_bogus_compiler_gives_clear_error(tmp_path, monkeypatch):
    monkeypatch.setenv("RETURNN_NATIVE_OP_CACHE", str(tmp_path / "cache"))
    monkeypatch.setenv("RETURNN_NATIVE_OP_CXX", str(tmp_path / "no-such-g++"))
    with pytest.raises(NativeOpBuildError, match=r"(?s)command: .*no-such-g\+\+.*lstmblock.*standardlstm"):
        build.build(lstm.LSTM_OP)


def test_build_compile_error_shows_first_error_lines(tmp_path, monkeypatch):
    monkeypatch.setenv("RETURNN_NATIVE_OP_CACHE", str(tmp_path / "cache"))
    broken = build.OpSpec(name="broken", cc_source="broken.cc")
    monkeypatch.setattr(build, "SOURCE_DIR", str(tmp_path))
    (tmp_path / "broken.cc").write_text("int main() { this is not C++; }\n")
    with pytest.raises(NativeOpBuildError, match=r"(?s)compiling failed.*command: .*broken\.cc.*error.*unit"):
        build.build(broken)
    assert not [p for p in os.listdir(tmp_path / "cache") if p.endswith(".so")]


def test_build_concurrent_compiles_run_once_and_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("RETURNN_NATIVE_OP_CACHE", str(tmp_path / "cache"))
    counter = str(tmp_path / "runs")
    compiler = write_fake_compiler(str(tmp_path / "fake-cxx"), counter)
    paths = []
    threads = [threading.Thread(target=lambda: paths.append(build.build(lstm.LSTM_OP, compiler=compiler)))
               for _ in range(3)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(set(paths)) == 1 and os.path.exists(paths[0])
    assert open(counter).read() == "x"
    assert build.build(lstm.LSTM_OP, compiler=compiler) == paths[0]
    assert open(counter).read() == "x"


def test_build_cache_key_follows_flags_and_sources(tmp_path, monkeypatch):
    monkeypatch.setenv("RETURNN_NATIVE_OP_CACHE", str(tmp_path))
    native = build.library_path(lstm.LSTM_OP)
    assert os.path.dirname(native) == str(tmp_path)
    monkeypatch.setenv("RETURNN_NATIVE_OP_MARCH", "x86-64-v3")
    portable = build.library_path(lstm.LSTM_OP)
    assert portable != native
    monkeypatch.setattr(build, "SOURCE_DIR", str(tmp_path))
    for name in ("lstm.cc", *lstm.LSTM_OP.headers):
        (tmp_path / name).write_text("// other source\n")
    assert build.library_path(lstm.LSTM_OP) not in (native, portable)


@pytest.mark.skipif(build.find_nvcc() is None, reason="nvcc not found")
def test_native_lstm_cuda_source_compiles_with_nvcc(tmp_path):
    """Only compiles lstm.cu (no GPU here to run it); the object exports the launch functions."""
    out = str(tmp_path / "lstm_cu.o")
    build._run(build.nvcc_command(lstm.LSTM_OP, build.find_nvcc(), out, archs=("80",)), lstm.LSTM_OP)
    content = open(out, "rb").read()
    assert b"returnn_lstm_cuda_forward" in content and b"returnn_lstm_cuda_backward" in content


@pytest.mark.slow
@pytest.mark.skipif(build.find_nvcc() is None, reason="nvcc not found")
def test_native_lstm_gpu_kernels_typecheck_against_tf_headers(tmp_path, monkeypatch):
    """lstm.cc with GOOGLE_CUDA=1 (the GPU op kernels) compiles against TF's headers (syntax only, ~15 s)."""
    if not os.path.exists(os.path.join(build.cuda_home(), "include", "cuda_runtime.h")):
        pytest.skip("CUDA headers not found")
    monkeypatch.setenv("RETURNN_NATIVE_OP_CACHE", str(tmp_path))
    cmd = build.cxx_command(lstm.LSTM_OP, build.find_compiler(), str(tmp_path / "unused.so"), cuda_object="unused.o")
    compile_only = cmd[: cmd.index("-o")] + ["-fsyntax-only"]
    assert "-DGOOGLE_CUDA=1" in compile_only
    build._run([flag for flag in compile_only if flag not in ("-shared", "-O3")], lstm.LSTM_OP)


def test_build_removes_temp_folders_of_killed_compiles_only(tmp_path, monkeypatch):
    cache = tmp_path / "cache"
    monkeypatch.setenv("RETURNN_NATIVE_OP_CACHE", str(cache))
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    host, hour_ago = socket.gethostname(), time.time() - 2 * build.STALE_TEMP_AGE_S
    folders = {"killed": f".lstm@{host}@{dead.pid}@abc", "running": f".lstm@{host}@{os.getpid()}@def",
               "other_host_fresh": ".lstm@elsewhere@1@ghi", "other_host_old": ".lstm@elsewhere@2@jkl",
               "unnamed_old": ".lstm-k2j4h5g6", "unnamed_fresh": ".lstm-a1b2c3d4", "not_ours": ".git"}
    for name, folder in folders.items():
        (cache / folder).mkdir(parents=True)
        (cache / folder / "lstm_cu.o").write_text("partial")
        if name.endswith("old") or name == "not_ours":
            os.utime(cache / folder, (hour_ago, hour_ago))
    compiler = write_fake_compiler(str(tmp_path / "fake-cxx"), str(tmp_path / "runs"))
    build.build(lstm.LSTM_OP, compiler=compiler)
    kept = {name for name, folder in folders.items() if (cache / folder).exists()}
    assert kept == {"running", "other_host_fresh", "unnamed_fresh", "not_ours"}
    # the compile's own temp folder is gone too
    assert sorted(p for p in os.listdir(cache) if p.startswith(".lstm@")) == sorted([folders["running"],
                                                                                     folders["other_host_fresh"]])
