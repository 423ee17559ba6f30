"""Weight port between Hugging Face checkpoints (Qwen2/Llama, safetensors) and our Decoder.

One table maps each of our parameter paths to a HF tensor name and a layout rule. Loading builds the
model abstractly, then creates each parameter directly on its final sharding with
`jax.make_array_from_callback`: every device shard reads only its slice of the memory-mapped file.
"""
from __future__ import annotations

import dataclasses
import json
import pathlib
import re
import shutil
from typing import Any, Protocol

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx
from jax.sharding import Mesh, SingleDeviceSharding

from r2rank_jax.mesh import param_shardings, path_str
from r2rank_jax.models.config import ModelConfig, load_hf_config
from r2rank_jax.models.decoder import Decoder
from r2rank_jax.models.lora import merge_lora
from r2rank_jax.models.safetensors_io import CheckpointError, SafetensorsCheckpoint, plan_shards, write_safetensors

TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json", "special_tokens_map.json", "vocab.json",
                   "merges.txt", "tokenizer.model", "generation_config.json", "chat_template.jinja")
IGNORED_HF_TENSORS = re.compile(r"rotary_emb\.inv_freq$")


@dataclasses.dataclass(frozen=True)
class Layout:
    """How our parameter is obtained from the HF tensor: optional 2-D transpose, then a reshape that
    splits one dimension `split` of the transposed tensor into (heads, head_dim)."""

    transpose: bool = False
    split: int | None = None


_RULES: tuple[tuple[str, str, Layout], ...] = (
    (r"embed", "model.embed_tokens.weight", Layout()),
    (r"lm_head", "lm_head.weight", Layout(transpose=True)),
    (r"final_norm/scale", "model.norm.weight", Layout()),
    (r"layers/(\d+)/input_norm/scale", "model.layers.{}.input_layernorm.weight", Layout()),
    (r"layers/(\d+)/post_attn_norm/scale", "model.layers.{}.post_attention_layernorm.weight", Layout()),
    (r"layers/(\d+)/attn/(q|k|v)_proj", "model.layers.{}.self_attn.{}_proj.weight", Layout(transpose=True, split=1)),
    (r"layers/(\d+)/attn/(q|k|v)_bias", "model.layers.{}.self_attn.{}_proj.bias", Layout(split=0)),
    (r"layers/(\d+)/attn/o_proj", "model.layers.{}.self_attn.o_proj.weight", Layout(transpose=True, split=0)),
    (r"layers/(\d+)/mlp/(gate|up|down)_proj", "model.layers.{}.mlp.{}_proj.weight", Layout(transpose=True)),
)


def hf_name(path: str) -> tuple[str, Layout]:
    """Our parameter path (e.g. "layers/3/attn/q_proj") → (HF tensor name, layout)."""
    for pattern, template, layout in _RULES:
        m = re.fullmatch(pattern, path)
        if m:
            return template.format(*m.groups()), layout
    raise CheckpointError(f"no HF name for parameter {path!r}")


class TensorSource(Protocol):
    def keys(self) -> list[str]: ...
    def shape(self, name: str) -> tuple[int, ...]: ...
    def array(self, name: str) -> np.ndarray: ...


class DictSource:
    """In-memory tensors (e.g. dequantized GGUF weights) behind the TensorSource interface."""

    def __init__(self, tensors: dict[str, np.ndarray]):
        self._t = tensors

    def keys(self) -> list[str]:
        return list(self._t)

    def shape(self, name: str) -> tuple[int, ...]:
        return tuple(self._t[name].shape)

    def array(self, name: str) -> np.ndarray:
        return self._t[name]


def _source_shape(shape: tuple[int, ...], layout: Layout) -> tuple[int, ...]:
    """Expected HF shape of a parameter of our `shape`."""
    merged = list(shape)
    if layout.split is not None:
        merged[layout.split:layout.split + 2] = [shape[layout.split] * shape[layout.split + 1]]
    return tuple(reversed(merged)) if layout.transpose else tuple(merged)


def _read_slice(src: np.ndarray, shape: tuple[int, ...], layout: Layout, index: tuple[slice, ...]) -> np.ndarray:
    """Reads our parameter's block `index` (slices over our `shape`) from the HF tensor `src`."""
    view = src.T if layout.transpose else src
    index = tuple(slice(*s.indices(n)) for s, n in zip(index, shape))
    if layout.split is None:
        return np.asarray(view[index])
    a = layout.split
    heads, head_dim = index[a], index[a + 1]
    if head_dim.start == 0 and head_dim.stop == shape[a + 1]:
        # A whole-head block is one contiguous range of the merged dimension: read only it.
        merged = slice(heads.start * shape[a + 1], heads.stop * shape[a + 1])
        block = np.asarray(view[index[:a] + (merged,) + index[a + 2:]])
        out_shape = [s.stop - s.start for s in index]
        return block.reshape(out_shape)
    full = np.asarray(view).reshape(shape)
    return full[index]


def _abstract_model(cfg: ModelConfig) -> tuple[Any, Any]:
    """(graphdef, abstract state) of a Decoder: shapes only, nothing allocated."""
    return nnx.split(nnx.eval_shape(lambda: Decoder(cfg, rngs=nnx.Rngs(0))))


def load_from_source(cfg: ModelConfig, source: TensorSource, mesh: Mesh | None = None, origin: str = "checkpoint") -> Decoder:
    """Builds a Decoder for `cfg` with every parameter read from `source` onto its final sharding.

    Raises CheckpointError naming the tensor when one is missing, has the wrong shape, or when the
    checkpoint holds tensors this architecture does not use (e.g. an o_proj bias).
    """
    graphdef, state = _abstract_model(cfg)
    abstract = nnx.to_pure_dict(state)
    shardings = param_shardings(abstract, mesh) if mesh is not None else None
    available = set(source.keys())
    used: set[str] = set()
    device = SingleDeviceSharding(jax.devices()[0])

    def load(path, leaf, sharding=None):
        name, layout = hf_name(path_str(path))
        if name not in available:
            raise CheckpointError(f"{origin}: missing tensor {name!r} (needed for parameter {path_str(path)!r})")
        expect = _source_shape(tuple(leaf.shape), layout)
        if tuple(source.shape(name)) != expect:
            raise CheckpointError(f"{origin}: tensor {name!r} has shape {tuple(source.shape(name))}, expected {expect} "
                                  f"for this config (parameter {path_str(path)!r})")
        used.add(name)
        src = source.array(name)
        dtype = leaf.dtype
        return jax.make_array_from_callback(
            tuple(leaf.shape), sharding or device,
            lambda idx: _read_slice(src, tuple(leaf.shape), layout, idx).astype(dtype))

    if shardings is None:
        params = jax.tree_util.tree_map_with_path(load, abstract)
    else:
        params = jax.tree_util.tree_map_with_path(load, abstract, shardings)
    extra = sorted(n for n in available - used if not IGNORED_HF_TENSORS.search(n)
                   and not (cfg.tie_word_embeddings and n == "lm_head.weight"))
    if extra:
        raise CheckpointError(f"{origin}: tensors not used by a {cfg.model_type} decoder with this config: "
                              f"{extra[:8]}{' ...' if len(extra) > 8 else ''} (unsupported architecture variant?)")
    nnx.replace_by_pure_dict(state, params)
    return nnx.merge(graphdef, state)


def load_hf(directory: str | pathlib.Path, mesh: Mesh | None = None, **config_overrides: Any) -> Decoder:
    """Loads a HF checkpoint directory (config.json + model.safetensors or a sharded index)."""
    directory = pathlib.Path(directory)
    cfg = load_hf_config(directory, **config_overrides)
    return load_from_source(cfg, SafetensorsCheckpoint(directory), mesh, origin=str(directory))


def hf_tensors(model: Decoder, dtype: str | None = None) -> list[tuple[str, np.ndarray]]:
    """Our parameters as (HF name, host array in HF layout), in a stable order. LoRA adapters are
    merged into their base weights first (a HF checkpoint has no adapters)."""
    _, state = nnx.split(merge_lora(model))
    pure = nnx.to_pure_dict(state)
    out = []
    leaves = jax.tree_util.tree_flatten_with_path(pure)[0]
    for path, leaf in leaves:
        name, layout = hf_name(path_str(path))
        arr = np.asarray(jax.device_get(leaf))
        if dtype is not None:
            arr = arr.astype(jnp.dtype(dtype))
        merged = _source_shape(arr.shape, Layout(split=layout.split))
        arr = arr.reshape(merged).T if layout.transpose else arr.reshape(merged)
        out.append((name, np.ascontiguousarray(arr)))
    order = {n: i for i, n in enumerate(_hf_order(model.config))}
    return sorted(out, key=lambda t: order.get(t[0], len(order)))


def _hf_order(cfg: ModelConfig) -> list[str]:
    names = ["model.embed_tokens.weight"]
    for i in range(cfg.num_layers):
        p = f"model.layers.{i}."
        names += [p + f"self_attn.{x}_proj.{w}" for x in "qkv" for w in ("weight", "bias")]
        names += [p + "self_attn.o_proj.weight", p + "mlp.gate_proj.weight", p + "mlp.up_proj.weight",
                  p + "mlp.down_proj.weight", p + "input_layernorm.weight", p + "post_attention_layernorm.weight"]
    return names + ["model.norm.weight", "lm_head.weight"]


def export_hf(model: Decoder, out_dir: str | pathlib.Path, *, dtype: str | None = None,
              tokenizer_from: str | pathlib.Path | None = None, max_shard_bytes: int = 4 << 30) -> pathlib.Path:
    """Writes config.json + safetensors (sharded with an index beyond `max_shard_bytes`) that transformers loads.

    A model with LoRA adapters is written merged (W + (alpha / rank) * A @ B): a plain decoder.
    Tokenizer files are copied from `tokenizer_from` when given.
    """
    out = pathlib.Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    tensors = hf_tensors(model, dtype)
    hf_cfg = model.config.to_hf_dict()
    hf_cfg["torch_dtype"] = str(np.dtype(tensors[0][1].dtype)) if dtype is None else dtype
    shards = list(plan_shards([(n, a.nbytes) for n, a in tensors], max_shard_bytes))
    by_name = dict(tensors)
    if len(shards) == 1:
        write_safetensors(out / "model.safetensors", tensors)
    else:
        weight_map = {}
        for i, names in enumerate(shards):
            file = f"model-{i + 1:05d}-of-{len(shards):05d}.safetensors"
            write_safetensors(out / file, [(n, by_name[n]) for n in names])
            weight_map.update(dict.fromkeys(names, file))
        total = sum(a.nbytes for _, a in tensors)
        (out / "model.safetensors.index.json").write_text(
            json.dumps({"metadata": {"total_size": total}, "weight_map": weight_map}, indent=2))
    (out / "config.json").write_text(json.dumps(hf_cfg, indent=2))
    if tokenizer_from is not None:
        for name in TOKENIZER_FILES:
            src = pathlib.Path(tokenizer_from) / name
            if src.is_file():
                shutil.copy(src, out / name)
    return out
