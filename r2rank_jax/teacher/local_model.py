"""Loading a local model + tokenizer for the local teacher and `serve`: an HF directory, a GGUF file,
or a tiny random model over the synthetic world's tokenizer (for tests and demos)."""
from __future__ import annotations

import atexit
import functools
import pathlib
import shutil
import tempfile
from typing import Any

TINY_SIZES = dict(hidden_size=64, intermediate_size=128, num_layers=2, num_heads=4, num_kv_heads=2, head_dim=16)


@functools.lru_cache(maxsize=None)
def synthetic_tiny_world() -> tuple[pathlib.Path, pathlib.Path]:
    """(benchmark dir, tokenizer dir) of a small synthetic world built once per process in a temporary
    directory removed at exit (~3 s)."""
    from r2rank_jax.data import synthetic
    from r2rank_jax.data.tokenizer import train_world_tokenizer

    root = pathlib.Path(tempfile.mkdtemp(prefix="r2rank-tiny-"))
    atexit.register(shutil.rmtree, root, True)
    synthetic.build_benchmark(root / "world", synthetic.WorldConfig(num_users=60, num_items=80, seed=0))
    train_world_tokenizer(root / "world" / "benchmark", root / "tokenizer", vocab_size=1024)
    return root / "world" / "benchmark", root / "tokenizer"


def tiny_model(tokenizer: Any, seed: int = 0, max_position_embeddings: int = 8192) -> Any:
    """A random tiny Llama-style decoder sized to ``tokenizer`` (EOS = the tokenizer's). Weights are
    drawn with NumPy into the abstract model: eager JAX init compiles every initializer (~15 s on a
    busy 2-core machine), this takes well under a second."""
    import jax
    import jax.numpy as jnp
    import numpy as np
    from flax import nnx

    from r2rank_jax.models.config import ModelConfig
    from r2rank_jax.models.decoder import Decoder

    cfg = ModelConfig(vocab_size=len(tokenizer), model_type="llama", attention_bias=False, tie_word_embeddings=True,
                      eos_token_id=tokenizer.eos_token_id, pad_token_id=tokenizer.pad_token_id or 0,
                      max_position_embeddings=max_position_embeddings, **TINY_SIZES)
    graphdef, state = nnx.split(nnx.eval_shape(lambda: Decoder(cfg, rngs=nnx.Rngs(seed))))
    rng = np.random.default_rng(seed)

    def fill(path, leaf):
        if "scale" in jax.tree_util.keystr(path):  # RMSNorm scales start at 1
            return jnp.ones(leaf.shape, leaf.dtype)
        return jnp.asarray((rng.standard_normal(leaf.shape) * 0.02).astype(leaf.dtype))

    return nnx.merge(graphdef, jax.tree_util.tree_map_with_path(fill, state))


def load_local_model(*, hf_dir: str | None = None, gguf: str | None = None, synthetic_tiny: bool = False,
                     tokenizer_dir: str | None = None, tokenizer: Any = None,
                     dtype: str = "float32") -> tuple[Any, Any, str]:
    """(model, tokenizer, name) from exactly one of ``hf_dir``, ``gguf`` or ``synthetic_tiny``.
    ``tokenizer`` or ``tokenizer_dir`` overrides the model's tokenizer (a tiny model is sized to it)."""
    from transformers import AutoTokenizer

    chosen = [name for name, on in (("hf_dir", hf_dir), ("gguf", gguf), ("synthetic_tiny", synthetic_tiny)) if on]
    if len(chosen) != 1:
        raise ValueError(f"give exactly one of --hf_dir, --gguf, --synthetic_tiny (got {chosen or 'none'})")
    if tokenizer is None and tokenizer_dir:
        tokenizer = AutoTokenizer.from_pretrained(tokenizer_dir)
    if hf_dir:
        from r2rank_jax.models.hf_port import load_hf

        model = load_hf(hf_dir, param_dtype=dtype, compute_dtype=dtype)
        return model, tokenizer or AutoTokenizer.from_pretrained(hf_dir), pathlib.Path(hf_dir).name
    if gguf:
        from r2rank_jax.models.gguf import load_gguf, load_gguf_tokenizer

        model = load_gguf(gguf, param_dtype=dtype, compute_dtype=dtype)
        return model, tokenizer or load_gguf_tokenizer(gguf), pathlib.Path(gguf).stem
    if tokenizer is None:
        tokenizer = AutoTokenizer.from_pretrained(str(synthetic_tiny_world()[1]))
    return tiny_model(tokenizer), tokenizer, "synthetic-tiny"
