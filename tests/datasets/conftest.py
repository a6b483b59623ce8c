"""Fixtures for the dataset tests."""

from __future__ import annotations

import pytest
from hdf_spec_example import write_spec_example


@pytest.fixture
def spec_example(tmp_path) -> str:
    """Path of the spec's worked-example file."""
    return write_spec_example(str(tmp_path / "example.hdf"))
