"""The TensorFlow 2 backend: network construction, layers, losses, engine."""
