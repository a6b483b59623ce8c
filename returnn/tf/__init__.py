"""TensorFlow side: network, layers, engine, native ops."""
