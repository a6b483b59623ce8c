"""TensorFlow backend: network, layers, native ops, engine."""
