"""The first thing to run on a new machine or cluster: does this JAX backend run r2rank_jax correctly?

    python -m r2rank_jax.tools.smoke [--mesh=fsdp:2] [--workdir DIR]

(`--mesh` over the first devices it needs; on CPU simulate several with
XLA_FLAGS=--xla_force_host_platform_device_count=N.)
On whatever JAX sees (CPU, GPU, TPU): the device kind and count; a tiny random Qwen2 checkpoint
(written by transformers) loaded into our decoder, its logits against transformers'; greedy sampling
against transformers' `generate`; one SFT step, one RL `train_step` and one checkpoint save + restore on
the mesh. Each part is timed. The last line printed is one JSON object: `backend`, `devices`,
`device_kind`, `mesh`, `ok`, `parts` (each part's result) and `timings` (seconds per part); the exit code
is 1 unless every part passed. Without torch (`pip install -e '.[gguf]'`) the two transformers parts are
reported as skipped and do not count against `ok`.
"""
from __future__ import annotations

import argparse
import json
import pathlib
import sys
import tempfile
import time
from collections.abc import Callable
from typing import Any

import numpy as np

VOCAB, PROMPT_LENS, NEW_TOKENS = 128, (7, 12), 8
LOGIT_TOL = {"cpu": 1e-4}               # float32 on CPU; accelerators' float32 matmuls are looser
ACCELERATOR_LOGIT_TOL = 5e-3


def tiny_qwen2(directory: pathlib.Path) -> pathlib.Path:
    """A random 2-layer Qwen2 (q/k/v bias, GQA, untied head) saved by transformers as safetensors."""
    import torch
    from transformers import Qwen2Config, Qwen2ForCausalLM

    torch.manual_seed(0)
    cfg = Qwen2Config(vocab_size=VOCAB, hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                      num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=256,
                      tie_word_embeddings=False, eos_token_id=VOCAB - 1, pad_token_id=0)
    Qwen2ForCausalLM(cfg).eval().save_pretrained(directory, safe_serialization=True)
    return directory


def part_logits(hf_dir: pathlib.Path, backend: str) -> dict:
    from r2rank_jax.tools.check_port import compare

    report = compare(str(hf_dir))
    tol = LOGIT_TOL.get(backend, ACCELERATOR_LOGIT_TOL)
    return {"ok": report["max_abs_logit_diff"] <= tol, "max_abs_logit_diff": report["max_abs_logit_diff"],
            "argmax_agreement": report["argmax_agreement"], "tol": tol}


def part_greedy(hf_dir: pathlib.Path) -> dict:
    import jax
    import torch
    from transformers import AutoModelForCausalLM

    from r2rank_jax.models.hf_port import load_hf
    from r2rank_jax.sampling.params import SamplingParams
    from r2rank_jax.sampling.sampler import Sampler, SamplerConfig

    rng = np.random.default_rng(1)
    prompts = [[int(t) for t in rng.integers(1, VOCAB - 1, n)] for n in PROMPT_LENS]
    ref = AutoModelForCausalLM.from_pretrained(hf_dir, dtype=torch.float32).eval()
    expected = []
    with torch.no_grad():
        for p in prompts:
            out = ref.generate(torch.tensor([p]), max_new_tokens=NEW_TOKENS, min_new_tokens=NEW_TOKENS,
                               do_sample=False, pad_token_id=0)
            expected.append(out[0, len(p):].tolist())
    sampler = Sampler(load_hf(str(hf_dir)), SamplerConfig(max_new_tokens=NEW_TOKENS, eos_ids=(), pad_id=0,
                                                          buckets=(16,)))
    got = np.asarray(sampler.generate(prompts, SamplingParams.make(len(prompts), temperature=0.0),
                                      jax.random.PRNGKey(0)).ids).tolist()
    return {"ok": got == expected, "tokens_compared": len(prompts) * NEW_TOKENS,
            "agreement": float(np.mean(np.asarray(got) == np.asarray(expected)))}


def _tiny_state(mesh, seed: int = 0):
    import jax
    import optax
    from flax import nnx

    from r2rank_jax.models.config import ModelConfig
    from r2rank_jax.models.decoder import Decoder
    from r2rank_jax.models.head import ScoringHead
    from r2rank_jax.train.state import create_train_state

    cfg = ModelConfig(vocab_size=VOCAB, hidden_size=32, intermediate_size=64, num_layers=2, num_heads=4,
                      num_kv_heads=2, head_dim=8, attention_bias=True)
    model, head = Decoder(cfg, rngs=nnx.Rngs(seed)), ScoringHead(32, 16, rngs=nnx.Rngs(seed + 1))
    return create_train_state(model, head, optax.adamw(1e-3), optax.adamw(1e-3), jax.random.PRNGKey(seed), mesh)


def _rows(mesh) -> int:
    """Rows per batch: a multiple of the mesh's batch axes (data × fsdp)."""
    return 2 if mesh is None else 2 * mesh.shape["data"] * mesh.shape["fsdp"]


def part_sft(static, state, mesh) -> tuple[Any, dict]:
    from r2rank_jax.distributed import put_batch
    from r2rank_jax.train import sft_data
    from r2rank_jax.train.sft import SFTConfig, make_sft_step
    from r2rank_jax.train.state import state_shardings

    rng = np.random.default_rng(2)
    rows = _rows(mesh)
    examples = [sft_data.SFTExample(str(i), str(i), 1, tuple(int(t) for t in rng.integers(1, VOCAB, 6)),
                                    tuple(int(t) for t in rng.integers(1, VOCAB, 4))) for i in range(rows)]
    batch = sft_data.Collate(rows, (8,), (8,), pad_id=0)(examples)
    step = make_sft_step(static, SFTConfig(), None, state_shardings(state) if mesh else None, mesh)
    state, metrics = step(state, put_batch({k: batch[k] for k in sft_data.DEVICE_KEYS}, mesh))
    loss = float(metrics["loss"])
    return state, {"ok": bool(np.isfinite(loss)) and int(metrics["skipped"]) == 0, "loss": loss}


def _rl_batch(users: int, k: int = 4, prefix: int = 6, suffix: int = 3, rationale: int = 4):
    import jax.numpy as jnp

    from r2rank_jax.train.rl_batch import RLBatch

    rng = np.random.default_rng(3)
    cont = rng.integers(1, VOCAB, (users, k, suffix + rationale)).astype(np.int32)
    positions = np.broadcast_to(prefix + np.arange(suffix + rationale), cont.shape).astype(np.int32)
    relevance = np.zeros((users, k), np.float32)
    relevance[:, 0] = 1.0
    return RLBatch(prefix_tokens=jnp.asarray(rng.integers(1, VOCAB, (users, prefix)), jnp.int32),
                   prefix_positions=jnp.asarray(np.broadcast_to(np.arange(prefix), (users, prefix)), jnp.int32),
                   cont_tokens=jnp.asarray(cont), cont_positions=jnp.asarray(positions),
                   response_mask=jnp.ones((users, k, rationale), bool),
                   old_logprobs=jnp.full((users, k, rationale), -np.log(VOCAB), jnp.float32),
                   score_index=jnp.full((users, k), suffix + rationale - 1, jnp.int32),
                   relevance=jnp.asarray(relevance), candidate_mask=jnp.ones((users, k), bool))


def part_rl(static, state, mesh) -> tuple[Any, dict]:
    from r2rank_jax.distributed import put_batch
    from r2rank_jax.train.rl import RLConfig, make_train_step
    from r2rank_jax.train.state import state_shardings

    step = make_train_step(static, RLConfig(advantage="item", num_rankings=2, baseline="mean"),
                           state_sharding=state_shardings(state) if mesh else None, mesh=mesh)
    state, metrics = step(state, put_batch(_rl_batch(_rows(mesh)), mesh))
    loss = float(metrics["loss"])
    return state, {"ok": bool(np.isfinite(loss)) and int(metrics["skipped"]) == 0, "loss": loss}


def part_checkpoint(state, directory: pathlib.Path) -> dict:
    import jax

    from r2rank_jax.train.checkpoint import CheckpointConfig, Checkpointer, abstract_like

    saved = jax.tree.map(np.asarray, state)
    with Checkpointer(CheckpointConfig(directory=str(directory))) as ckpt:
        ckpt.save(1, state)
        ckpt.wait()
        restored = ckpt.restore(abstract_like(state), step=1)
    same = all(np.array_equal(a, np.asarray(b)) for a, b in zip(jax.tree.leaves(saved), jax.tree.leaves(restored)))
    shardings = all(getattr(a, "sharding", None) == getattr(b, "sharding", None)
                    for a, b in zip(jax.tree.leaves(state), jax.tree.leaves(restored)))
    return {"ok": same and shardings, "leaves": len(jax.tree.leaves(saved)), "same_shardings": shardings}


class _Parts:
    """Each part's result and time; a part that raises is recorded as failed (or skipped, when torch is
    missing) and the check goes on."""

    def __init__(self):
        self.results: dict[str, dict] = {}
        self.timings: dict[str, float] = {}

    def run(self, name: str, fn: Callable[[], Any]) -> Any:
        start = time.perf_counter()
        try:
            out = fn()
        except ImportError as e:
            self.results[name] = {"ok": None, "skipped": f"{e} (pip install -e '.[gguf]' brings torch)"}
            out = None
        except Exception as e:  # noqa: BLE001 - the smoke check reports every failure and goes on
            self.results[name] = {"ok": False, "error": f"{type(e).__name__}: {e}"}
            out = None
        self.timings[name] = round(time.perf_counter() - start, 3)
        return out

    def record(self, name: str, result: dict | None) -> None:
        if result is not None:
            self.results[name] = result


def _mesh(spec: str, devices):
    """The mesh of `spec` over the first devices it needs (a smoke check need not use a whole host);
    a spec needing more devices than there are is make_mesh's error."""
    from r2rank_jax.mesh import make_mesh

    need = 1
    for part in spec.split(","):
        size = part.partition(":")[2].strip()
        need *= int(size) if size.isdigit() else 1
    if spec.strip() != "auto" and need < len(devices):
        devices = devices[:need]
    return make_mesh(spec, devices=devices)


def run(mesh_spec: str | None, workdir: pathlib.Path) -> dict:
    import jax

    backend, devices = jax.default_backend(), jax.devices()
    p = _Parts()
    mesh = p.run("mesh", lambda: _mesh(mesh_spec, devices) if mesh_spec else None)
    if "mesh" in p.results:                  # a mesh that does not fit the devices: nothing else can run
        return _report(backend, devices, mesh_spec, p)
    p.record("mesh", {"ok": True, "shape": dict(mesh.shape) if mesh is not None else None,
                      "devices_used": mesh.devices.size if mesh is not None else 1})

    hf_dir = p.run("tiny_checkpoint", lambda: tiny_qwen2(workdir / "tiny_qwen2"))
    if hf_dir is None:
        for name in ("logits", "greedy"):
            p.record(name, {"ok": None, "skipped": "no tiny transformers checkpoint (see tiny_checkpoint)"})
    else:
        p.record("tiny_checkpoint", {"ok": True})
        p.record("logits", p.run("logits", lambda: part_logits(hf_dir, backend)))
        p.record("greedy", p.run("greedy", lambda: part_greedy(hf_dir)))

    built = p.run("state", lambda: _tiny_state(mesh))
    if built is not None:
        static, state = built
        for name, part in (("sft_step", part_sft), ("rl_step", part_rl)):
            out = p.run(name, lambda: part(static, state, mesh))
            if out is None:
                break
            state, result = out
            p.record(name, result)
        else:
            p.record("checkpoint", p.run("checkpoint", lambda: part_checkpoint(state, workdir / "ckpt")))
    return _report(backend, devices, mesh_spec, p)


def _report(backend: str, devices, mesh_spec: str | None, p: _Parts) -> dict:
    import jax

    ok = all(r.get("ok") is not False for r in p.results.values()) and \
        all(p.results.get(name, {}).get("ok") for name in ("sft_step", "rl_step", "checkpoint"))
    return {"backend": backend, "devices": len(devices), "device_kind": devices[0].device_kind,
            "processes": jax.process_count(), "mesh": mesh_spec, "ok": ok, "parts": p.results,
            "timings": p.timings}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m r2rank_jax.tools.smoke", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--mesh", default=None, help="e.g. fsdp:2 or data:2,fsdp:2 (default: no mesh, one device)")
    parser.add_argument("--workdir", default=None, help="where the tiny checkpoints go (default: a temporary dir)")
    args = parser.parse_args(argv)
    if args.workdir:
        report = run(args.mesh, pathlib.Path(args.workdir))
    else:
        with tempfile.TemporaryDirectory(prefix="r2rank_smoke_") as tmp:
            report = run(args.mesh, pathlib.Path(tmp))
    print(json.dumps(report))
    return 0 if report["ok"] else 1


if __name__ == "__main__":
    sys.exit(main())
