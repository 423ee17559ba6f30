import pathlib
import sys

import pytest

sys.path.insert(0, str(pathlib.Path(__file__).parent))


@pytest.fixture(scope="session")
def tiny_world() -> tuple[pathlib.Path, pathlib.Path]:
    """(benchmark dir, tokenizer dir) of a small synthetic world, built once per session."""
    from r2rank_jax.teacher.local_model import synthetic_tiny_world

    return synthetic_tiny_world()


@pytest.fixture(scope="session")
def builder(tiny_world):
    from transformers import AutoTokenizer

    from r2rank_jax.data.benchmark import load_items
    from r2rank_jax.data.prompts import PromptBuilder

    bench, tok = tiny_world
    return PromptBuilder(AutoTokenizer.from_pretrained(str(tok)), load_items(bench))


@pytest.fixture(scope="session")
def train_records(tiny_world):
    from r2rank_jax.data.benchmark import load_split

    return load_split(tiny_world[0], "train")
