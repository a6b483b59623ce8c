"""Pure-Python helpers; nothing here imports TensorFlow."""
