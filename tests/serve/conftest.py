import pathlib
import sys
import threading

import pytest

sys.path.insert(0, str(pathlib.Path(__file__).parent))


@pytest.fixture(scope="session")
def tiny_world() -> tuple[pathlib.Path, pathlib.Path]:
    from r2rank_jax.teacher.local_model import synthetic_tiny_world

    return synthetic_tiny_world()


@pytest.fixture(scope="session")
def tiny_parts(tiny_world):
    """(model, tokenizer) of the random tiny model over the world's tokenizer."""
    from r2rank_jax.teacher.local_model import load_local_model

    model, tokenizer, _ = load_local_model(synthetic_tiny=True, tokenizer_dir=str(tiny_world[1]))
    return model, tokenizer


@pytest.fixture(scope="session")
def served(tiny_parts):
    """A running server (127.0.0.1, free port) whose engine has a random, non-zero scoring head."""
    import jax
    from flax import nnx

    from r2rank_jax.models.head import ScoringHead
    from r2rank_jax.serve.engine import Engine
    from r2rank_jax.serve.server import Server
    from r2rank_jax.teacher.generator import SamplerGenerator

    model, tokenizer = tiny_parts
    head = ScoringHead(model.config.hidden_size, 32, rngs=nnx.Rngs(1))
    head.w2[...] = jax.random.normal(jax.random.key(2), head.w2[...].shape)
    engine = Engine(model, tokenizer, SamplerGenerator(model, tokenizer), name="tiny", head=head,
                    max_tokens_limit=64, default_max_tokens=8)
    server = Server(engine, "127.0.0.1", 0)
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    yield server
    server.shutdown()
    server.server_close()
