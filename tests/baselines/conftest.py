"""Synthetic worlds for the baseline tests, each built once per session in a temporary directory."""
import pathlib

import pytest

from r2rank_jax.data import synthetic


def _world(factory, name: str, config: synthetic.WorldConfig) -> pathlib.Path:
    out = factory.mktemp(name) / "world"
    synthetic.build_benchmark(out, config)
    return out / "benchmark"


@pytest.fixture(scope="session")
def tiny_world(tmp_path_factory) -> pathlib.Path:
    """200 users (160 train / 20 valid / 20 test), 120 items: for a few training steps."""
    return _world(tmp_path_factory, "tiny-world", synthetic.WorldConfig(num_users=200, num_items=120, seed=7))


@pytest.fixture(scope="session")
def quality_world(tmp_path_factory) -> pathlib.Path:
    """2000 users (1600 train / 200 test), 300 items: enough test users to separate methods."""
    return _world(tmp_path_factory, "quality-world", synthetic.WorldConfig(num_users=2000, seed=1))
