"""Fixtures for the ranking tests."""
from collections.abc import Iterator

import jax
import pytest


@pytest.fixture
def x64() -> Iterator[None]:
    """Run the test body with float64 enabled, restoring the previous setting afterwards."""
    with jax.enable_x64(True):
        yield
