"""RETURNN's ``returnn.tf.util`` modules: ``basic`` (tensor helpers configs call) and ``data`` (Data, Dim)."""
