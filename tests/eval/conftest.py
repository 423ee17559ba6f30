"""A small synthetic world benchmark, built once per session in a temporary directory."""
import pathlib

import pytest

from r2rank_jax.data import synthetic


@pytest.fixture(scope="session")
def eval_world(tmp_path_factory) -> pathlib.Path:
    out = tmp_path_factory.mktemp("eval-world") / "world"
    synthetic.build_benchmark(out, synthetic.WorldConfig(num_users=200, num_items=120, seed=5))
    return out / "benchmark"
