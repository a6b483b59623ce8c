<<<<<<< HEAD
"""TensorFlow side: network, layers, engine, native ops."""
=======
"""The TensorFlow 2 backend: network construction, layers, losses, engine."""
>>>>>>> network
