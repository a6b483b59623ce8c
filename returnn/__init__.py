"""A config-driven recurrent network framework on TensorFlow 2, compatible with RETURNN configs and files."""

__version__ = "0.1.0"
__long_version__ = __version__  # RETURNN adds the git commit here; we are versioned by release only

import os as _os

# TensorFlow's C++ INFO and WARNING lines (oneDNN notices, CPU feature hints) would bury our own log;
# a user who wants them sets TF_CPP_MIN_LOG_LEVEL explicitly.
_os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
