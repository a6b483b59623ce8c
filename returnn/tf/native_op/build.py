"""Compile native ops at first use, cache the library, load it with ``tf.load_op_library``.

The library is cached under ``$RETURNN_NATIVE_OP_CACHE`` (default: the user cache dir,
``$XDG_CACHE_HOME/returnn/native_op`` or ``~/.cache/returnn/native_op``), keyed by a hash of the
sources, the TensorFlow version, the compiler, its flags and (for ``-march=native``) the host CPU.
Two processes compiling at once serialize on a lock file; the library appears by atomic rename.
A compile works in a temp folder ``.<op>@<host>@<pid>@<random>`` in the cache; one left by a killed
compile is removed by the next build (see ``remove_stale_temp_dirs``).

Environment overrides: ``RETURNN_NATIVE_OP_CXX`` (C++ compiler), ``RETURNN_NATIVE_OP_NVCC``,
``RETURNN_NATIVE_OP_MARCH`` (``-march`` value, default ``native``; use e.g. ``x86-64-v3`` when the
cache is shared between hosts).
"""

from __future__ import annotations

import fcntl
import hashlib
import os
import platform
import re
import shlex
import shutil
import socket
import subprocess
import tempfile
import time
from dataclasses import dataclass, field
from typing import Sequence

import tensorflow as tf

from returnn.errors import NativeOpBuildError
from returnn.log import DETAIL, logger

SOURCE_DIR = os.path.dirname(os.path.abspath(__file__))
CXX_FLAGS = ("-shared", "-fPIC", "-O3", "-DNDEBUG", "-Wno-deprecated-declarations", "-Wno-interference-size")
NVCC_FLAGS = ("-c", "-O3", "--std=c++17", "-Xcompiler", "-fPIC")
CUDA_ARCHS = ("75", "80", "86", "89", "90")
FALLBACK_HINT = 'use "unit": "lstmblock" or "unit": "standardlstm" in the rec layer instead'
_MAX_ERROR_LINES = 15
STALE_TEMP_AGE_S = 3600.0  # a temp folder of another host (or of an unknown owner) this old is a leftover
_TEMP_DIR = re.compile(r"^\.(?P<op>[^@]+)@(?P<host>[^@]+)@(?P<pid>\d+)@[^@]*$")
_OLD_TEMP_DIR = re.compile(r"^\.[A-Za-z0-9_]+-[A-Za-z0-9_]{8}$")  # named before the owner was in the name


@dataclass(frozen=True)
class OpSpec:
    """What to build: a C++ op source, its headers, and an optional TF-header-free CUDA source."""

    name: str
    cc_source: str
    headers: tuple[str, ...] = ()
    cu_source: str | None = None
    fallback_hint: str = FALLBACK_HINT
    extra_flags: tuple[str, ...] = field(default=())


def cache_dir() -> str:
    """The folder holding compiled libraries (``RETURNN_NATIVE_OP_CACHE`` overrides it)."""
    override = os.environ.get("RETURNN_NATIVE_OP_CACHE")
    if override:
        return os.path.abspath(os.path.expanduser(override))
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return os.path.join(base, "returnn", "native_op")


def find_compiler(compiler: str | None = None) -> str:
    """The C++ compiler: the argument or ``$RETURNN_NATIVE_OP_CXX`` as given, else ``$CXX``, g++, c++ on PATH."""
    explicit = compiler or os.environ.get("RETURNN_NATIVE_OP_CXX")
    if explicit:  # used even when missing, so that the error names it
        return shutil.which(explicit) or explicit
    for candidate in (os.environ.get("CXX"), "g++", "c++"):
        if candidate and shutil.which(candidate):
            return shutil.which(candidate)
    return "g++"


def find_nvcc() -> str | None:
    """``$RETURNN_NATIVE_OP_NVCC``, nvcc on PATH, or ``/usr/local/cuda/bin/nvcc``; None if absent."""
    for candidate in (os.environ.get("RETURNN_NATIVE_OP_NVCC"), "nvcc", "/usr/local/cuda/bin/nvcc"):
        if candidate and shutil.which(candidate):
            return shutil.which(candidate)
    return None


def use_cuda() -> bool:
    """Build the GPU kernels only when TF was built with CUDA and nvcc is there."""
    return tf.test.is_built_with_cuda() and find_nvcc() is not None


def _arch_flags() -> list[str]:
    march = os.environ.get("RETURNN_NATIVE_OP_MARCH", "native")
    return [f"-march={march}"] if march else []


def _host_signature() -> str:
    """CPU model and flags: a ``-march=native`` library must not be reused on another CPU."""
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as f:
            lines = [line for line in f if line.startswith(("model name", "flags"))][:2]
    except OSError:
        lines = [platform.processor()]
    return "".join(lines)


def cuda_home() -> str:
    """The CUDA toolkit folder: ``$CUDA_HOME``, the one around nvcc, else /usr/local/cuda."""
    if os.environ.get("CUDA_HOME"):
        return os.environ["CUDA_HOME"]
    around_nvcc = os.path.dirname(os.path.dirname(os.path.realpath(find_nvcc() or "/usr/local/cuda/bin/nvcc")))
    if os.path.exists(os.path.join(around_nvcc, "include", "cuda_runtime.h")):
        return around_nvcc
    return "/usr/local/cuda"  # nvcc may be a wrapper script outside the toolkit


def cuda_include_flags() -> list[str]:
    """-I flags for compiling TF's GPU headers: the toolkit and a shim for TF's bundled include path.

    TF's headers include ``third_party/gpus/cuda/include/...``, which the wheel does not ship; a
    folder whose ``third_party/gpus/cuda/include`` links to the toolkit's include folder fixes that.
    """
    include = os.path.join(cuda_home(), "include")
    shim = os.path.join(cache_dir(), "cuda_shim")
    link = os.path.join(shim, "third_party", "gpus", "cuda", "include")
    if not os.path.exists(link):
        os.makedirs(os.path.dirname(link), exist_ok=True)
        tmp_link = f"{link}.{os.getpid()}.tmp"
        os.symlink(include, tmp_link)
        os.replace(tmp_link, link)
    return ["-I", include, "-I", shim]


def cxx_command(spec: OpSpec, compiler: str, output: str, *, cuda_object: str | None = None) -> list[str]:
    """The full compile-and-link command for the op's C++ source."""
    cmd = [compiler, *CXX_FLAGS, *_arch_flags(), *tf.sysconfig.get_compile_flags(), *spec.extra_flags]
    cmd += ["-I", SOURCE_DIR, os.path.join(SOURCE_DIR, spec.cc_source), "-o", output]
    if cuda_object:
        cmd[1:1] = ["-DGOOGLE_CUDA=1", *cuda_include_flags()]
        cmd += [cuda_object, "-L", os.path.join(cuda_home(), "lib64"), "-lcudart", "-lcublas"]
    return cmd + list(tf.sysconfig.get_link_flags())


def nvcc_command(spec: OpSpec, nvcc: str, output: str, *, archs: Sequence[str] = CUDA_ARCHS) -> list[str]:
    """nvcc command compiling the TF-header-free CUDA source to an object file."""
    gencode = [f"-gencode=arch=compute_{a},code=sm_{a}" for a in archs]
    return [nvcc, *NVCC_FLAGS, *gencode, os.path.join(SOURCE_DIR, spec.cu_source), "-o", output]


def check_nvcc_version(nvcc: str, spec: OpSpec) -> None:
    """nvcc's CUDA major version must match the one TensorFlow was built with."""
    wanted = str(tf.sysconfig.get_build_info().get("cuda_version", "")).split(".")[0]
    proc = subprocess.run([nvcc, "--version"], capture_output=True, text=True, check=False)
    found = proc.stdout.split("release ")[-1].split(".")[0] if "release " in proc.stdout else "?"
    if wanted and found != wanted:
        raise NativeOpBuildError(
            f"native op '{spec.name}': {nvcc} is CUDA {found}, TensorFlow was built with CUDA {wanted}; "
            f"point RETURNN_NATIVE_OP_NVCC at a CUDA {wanted} nvcc, or {spec.fallback_hint}.")


def _source_hash(spec: OpSpec, compiler: str, cuda: bool) -> str:
    digest = hashlib.sha256()
    names = [spec.cc_source, *spec.headers] + ([spec.cu_source] if cuda and spec.cu_source else [])
    for name in names:
        with open(os.path.join(SOURCE_DIR, name), "rb") as f:
            digest.update(name.encode() + b"\0" + f.read() + b"\0")
    flags = [compiler, *CXX_FLAGS, *_arch_flags(), *tf.sysconfig.get_compile_flags(), *tf.sysconfig.get_link_flags()]
    digest.update("\0".join([tf.__version__, *flags, *spec.extra_flags, f"cuda={cuda}"]).encode())
    if "-march=native" in flags:
        digest.update(_host_signature().encode())
    return digest.hexdigest()[:16]


def library_path(spec: OpSpec, *, compiler: str | None = None) -> str:
    """Where the compiled library for ``spec`` lives (or will live) in the cache."""
    compiler = find_compiler(compiler)
    return os.path.join(cache_dir(), f"{spec.name}-{_source_hash(spec, compiler, use_cuda())}.so")


def _run(cmd: Sequence[str], spec: OpSpec) -> None:
    """Run one compiler command; on failure raise NativeOpBuildError with the command and first errors."""
    try:
        proc = subprocess.run(list(cmd), capture_output=True, text=True, check=False)
    except OSError as exc:
        raise NativeOpBuildError(
            f"native op '{spec.name}': cannot run the compiler ({exc}).\n  command: {shlex.join(cmd)}\n"
            f"  Install g++ (or set RETURNN_NATIVE_OP_CXX), or {spec.fallback_hint}."
        ) from None
    if proc.returncode != 0:
        lines = (proc.stderr or proc.stdout).splitlines()
        errors = [line for line in lines if "error" in line.lower()] or lines
        shown = "\n    ".join(errors[:_MAX_ERROR_LINES])
        raise NativeOpBuildError(
            f"native op '{spec.name}': compiling failed (exit code {proc.returncode}).\n  command: {shlex.join(cmd)}\n"
            f"  first error lines:\n    {shown}\n  Fix the compiler setup (RETURNN_NATIVE_OP_CXX), or {spec.fallback_hint}."
        )


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # another user's process
    return True


def _is_stale(name: str, path: str, now: float) -> bool:
    """A temp folder of this host whose owner process is gone, or one an hour old of another host / no owner;
    a folder of a live process on this host is never stale, however long its compile takes."""
    match = _TEMP_DIR.match(name)
    if match is None and not _OLD_TEMP_DIR.match(name):
        return False  # not a compile's temp folder
    if match is not None and match["host"] == socket.gethostname():
        return not _pid_alive(int(match["pid"]))
    try:
        return now - os.stat(path).st_mtime > STALE_TEMP_AGE_S
    except OSError:
        return False  # removed meanwhile


def remove_stale_temp_dirs(directory: str) -> list[str]:
    """Remove temp folders left in the cache ``directory`` by killed compiles (see ``_is_stale``); returns their
    names. A concurrent compile's folder is kept: its owner is alive (this host) or it is fresh (another host)."""
    try:
        names = os.listdir(directory)
    except OSError:
        return []
    now, removed = time.time(), []
    for name in names:
        path = os.path.join(directory, name)
        if name.startswith(".") and os.path.isdir(path) and not os.path.islink(path) and _is_stale(name, path, now):
            shutil.rmtree(path, ignore_errors=True)  # another build may remove it at the same time
            removed.append(name)
    if removed:
        logger.log(DETAIL, f"Removed {len(removed)} stale native op temp folder(s) in {directory}: {', '.join(removed)}")
    return removed


def _compile_into(spec: OpSpec, compiler: str, target: str) -> None:
    """Compile in a temp folder (named after this host and process) of the cache folder; rename to ``target``."""
    directory = os.path.dirname(target)
    prefix = f".{spec.name}@{socket.gethostname()}@{os.getpid()}@"
    with tempfile.TemporaryDirectory(prefix=prefix, dir=directory) as tmp:
        cuda_object = None
        if use_cuda() and spec.cu_source:
            check_nvcc_version(find_nvcc(), spec)
            cuda_object = os.path.join(tmp, spec.name + "_cu.o")
            _run(nvcc_command(spec, find_nvcc(), cuda_object), spec)
        tmp_lib = os.path.join(tmp, os.path.basename(target))
        _run(cxx_command(spec, compiler, tmp_lib, cuda_object=cuda_object), spec)
        os.replace(tmp_lib, target)


def build(spec: OpSpec, *, compiler: str | None = None) -> str:
    """Path of the compiled library for ``spec``, compiling it first when it is not cached."""
    compiler = find_compiler(compiler)
    target = library_path(spec, compiler=compiler)
    remove_stale_temp_dirs(os.path.dirname(target))  # a listdir: builds run once per process and op
    if os.path.exists(target):
        return target
    os.makedirs(os.path.dirname(target), exist_ok=True)
    with open(target + ".lock", "w", encoding="utf-8") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if not os.path.exists(target):  # another process may have built it while we waited
            logger.info(f"Compiling native op '{spec.name}' (takes ~1 minute once; cached in {target}) ...")
            start = time.monotonic()
            _compile_into(spec, compiler, target)
            logger.log(DETAIL, f"Native op '{spec.name}' compiled in {time.monotonic() - start:.1f} s")
    return target


_LOADED: dict[str, object] = {}
_LOADED_PATHS: dict[str, str] = {}


def loaded_libraries() -> dict[str, str]:
    """The op libraries this process loaded so far: ``{op name: path of the .so}`` (an export copies them)."""
    return dict(_LOADED_PATHS)


def load(spec: OpSpec, *, compiler: str | None = None):
    """Build (if needed) and load the op library once per process; returns the loaded module."""
    if spec.name not in _LOADED:
        path = build(spec, compiler=compiler)
        try:
            _LOADED[spec.name] = tf.load_op_library(path)
            _LOADED_PATHS[spec.name] = path
        except tf.errors.NotFoundError as exc:
            raise NativeOpBuildError(
                f"native op '{spec.name}': loading {path} failed: {exc.message}. Delete it to rebuild, or {spec.fallback_hint}."
            ) from None
    return _LOADED[spec.name]
