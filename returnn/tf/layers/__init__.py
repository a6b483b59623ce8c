"""Layer classes of the TensorFlow backend, one family per module."""
