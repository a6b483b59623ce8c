"""Load the scripts in tools/ as modules."""

from __future__ import annotations

import importlib.util
import os

import pytest

TOOLS_DIR = os.path.join(os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))), "tools")


def load_tool(name: str):
    """Import tools/<name>.py."""
    spec = importlib.util.spec_from_file_location(f"tool_{name}", os.path.join(TOOLS_DIR, f"{name}.py"))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture
def tool():
    """``tool("hdf_dump")`` -> the module."""
    return load_tool
