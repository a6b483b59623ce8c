#!/usr/bin/env python3
"""Runs a RETURNN-style config: ``./rnn.py CONFIG [++key value ...]``."""

import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from returnn.__main__ import main  # noqa: E402 (the path above makes a checkout runnable without install)

if __name__ == "__main__":
    sys.exit(main())
