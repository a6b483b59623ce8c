"""Load the scripts in tools/ as modules; the worked-example HDF file of the spec."""

from __future__ import annotations

import importlib.util
import os
import sys

import pytest

TESTS_DIR = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TOOLS_DIR = os.path.join(os.path.dirname(TESTS_DIR), "tools")
sys.path.insert(0, os.path.join(TESTS_DIR, "datasets"))

from hdf_spec_example import write_spec_example  # noqa: E402


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


@pytest.fixture
def spec_example(tmp_path) -> str:
    """Path of the spec's worked-example file."""
    return write_spec_example(str(tmp_path / "example.hdf"))
