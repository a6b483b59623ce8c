"""Native (C++ / CUDA) TensorFlow ops, compiled at first use and cached (see ``build``)."""
