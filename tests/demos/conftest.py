"""Quiet TensorFlow's C++ start-up logs in these tests."""

import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
