#!/usr/bin/env python3
"""Precompile the native ops into the cache (``$RETURNN_NATIVE_OP_CACHE`` or the user cache dir).

Prints where each library went. ``--print-command`` shows the compiler command without running it.

    python tools/compile_native_op.py
    RETURNN_NATIVE_OP_MARCH=x86-64-v3 RETURNN_NATIVE_OP_CACHE=/shared/cache python tools/compile_native_op.py
"""

from __future__ import annotations

import argparse
import os
import shlex
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from returnn.errors import NativeOpBuildError  # noqa: E402
from returnn.tf.native_op import build  # noqa: E402
from returnn.tf.native_op.lstm import LSTM_OP, load_native_lstm  # noqa: E402


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Compile the native LSTM op into the cache and print its path.")
    parser.add_argument("--compiler", default=None, help="C++ compiler (default: $RETURNN_NATIVE_OP_CXX, $CXX, g++)")
    parser.add_argument("--print-command", action="store_true", help="only print the compile command")
    args = parser.parse_args(argv)
    target = build.library_path(LSTM_OP, compiler=args.compiler)
    if args.print_command:
        print(shlex.join(build.cxx_command(LSTM_OP, build.find_compiler(args.compiler), target)))
        return 0
    cached = os.path.exists(target)
    start = time.monotonic()
    try:
        path = build.build(LSTM_OP, compiler=args.compiler)
        load_native_lstm(compiler=args.compiler)
    except NativeOpBuildError as exc:
        print(f"NativeOpBuildError: {exc}", file=sys.stderr)
        return 1
    how = "already cached" if cached else f"compiled in {time.monotonic() - start:.1f} s"
    print(f"native_lstm: {path} ({how}; CUDA kernels: {'yes' if build.use_cuda() else 'no'})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
