#!/usr/bin/env python3
"""Export a trained model as a TensorFlow SavedModel (the same as ``rnn.py CONFIG ++task export ...``).

Usage: tools/export_model.py CONFIG [CONFIG ...] --export-dir DIR [--epoch N] [++key value ...]
Without --epoch: ``load`` / ``load_epoch`` of the config, else the newest checkpoint. See docs/export.rst.
"""

from __future__ import annotations

import argparse
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from returnn.__main__ import main as rnn_main  # noqa: E402


def main(argv: list[str] | None = None) -> int:
    """Run task export with the given config files and ``++`` overrides; the exit code of ``rnn.py``."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--export-dir", required=True, help="folder to write the SavedModel to (replaced when done)")
    parser.add_argument("--epoch", type=int, help="epoch of the checkpoint model.NNN to export")
    args, rest = parser.parse_known_args(argv)
    if not rest or rest[0].startswith("++"):
        parser.error("give at least one config file")
    rest += ["++task", "export", "++export_dir", args.export_dir]
    if args.epoch is not None:
        rest += ["++load_epoch", str(args.epoch)]
    return rnn_main(rest)


if __name__ == "__main__":
    sys.exit(main())
