"""A config-driven recurrent network framework on TensorFlow 2, compatible with RETURNN configs and files."""

__version__ = "0.1.0"
