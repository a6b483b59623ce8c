"""Layer families. Importing this package imports each of its modules, so each registers its layers.

A new family is one module here (or in a subpackage) whose classes use ``@register_layer``; no
central list needs editing.
"""

from __future__ import annotations

import importlib
import pkgutil

from returnn.tf.layers.base import LAYER_CLASSES, LayerBase, LayerContext, LayerOpts, get_layer_class, register_layer


def _import_families() -> None:
    """Import every module of this package (subpackages included) once."""
    for module in pkgutil.walk_packages(__path__, prefix=f"{__name__}."):
        importlib.import_module(module.name)


_import_families()

__all__ = ["LAYER_CLASSES", "LayerBase", "LayerContext", "LayerOpts", "get_layer_class", "register_layer"]
