"""Will a config fit its mesh? Compile the real SFT and RL train steps ahead of time and read their memory.

    python -m r2rank_jax.tools.aot_memory --config=configs/qwen2_5_3b.py --mesh=fsdp:16 [--devices=16]
        [--hbm_gib=16] [--config.rl.batch_users=16 ...] [--out report.json]

Exit status 0 when the config fits the budget, 1 when it does not.

The model is built abstractly (shapes only: nothing is allocated, no checkpoint is read) from the
config's `model.preset` (or the `config.json` of `model.path` when it exists). The train state (fp32
master weights or `model.param_dtype`, both optimizers) is sharded by the partition rules over a
simulated CPU mesh of `--devices` devices, and the jitted SFT step and RL step are lowered and compiled
for the configured batch:

- SFT: `sft.batch_size` rows of max(prefix) + max(suffix) prompt + max(response bucket) tokens;
- RL: `rl.batch_users` users x `data.num_candidates` candidates, the shared prefix (largest prefix
  bucket) and a continuation of the largest suffix bucket + `rl.max_new_tokens` rationale tokens.

XLA's memory analysis of each compiled executable gives per-device argument, output and temporary
bytes; the peak is arguments + outputs − aliased (donated) + temporaries. The last line is
`aot <config> mesh=<spec> per_device_gib=<x> budget_gib=<y> fits=<true|false>` for the larger step.
The compiled program is the one `launch` runs on that mesh; only the hardware differs (TPU/GPU
layouts, fusion and rematerialization choices can move the temporary figure by some percent, so
keep a margin).
"""
from __future__ import annotations

import argparse
import json
import os
import pathlib
import sys
import time


def _parse(argv: list[str] | None) -> tuple[argparse.Namespace, dict[str, str]]:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--config", required=True)
    p.add_argument("--mesh", required=True, help="e.g. fsdp:16 or data:2,fsdp:4,tensor:2")
    p.add_argument("--devices", type=int, default=None, help="simulated devices (default: the mesh size)")
    p.add_argument("--hbm_gib", type=float, default=16.0, help="per-device memory budget (16: TPU v5e, 80: H100)")
    p.add_argument("--steps", default="sft,rl", help="which steps to compile: sft, rl or both")
    p.add_argument("--out", default=None, help="write the JSON report here")
    p.add_argument("--vocab_size", type=int, default=1024, help='vocabulary of a model.kind="random" config')
    args, rest = p.parse_known_args(argv)
    overrides = {}
    for item in rest:
        if not item.startswith("--config.") or "=" not in item:
            p.error(f"unrecognized argument {item!r} (config overrides look like --config.rl.steps=10)")
        key, value = item[len("--config."):].split("=", 1)
        overrides[key] = value
    return args, overrides


def _mesh_size(spec: str) -> int:
    size = 1
    for part in spec.split(","):
        _, _, n = part.partition(":")
        size *= int(n) if n.strip().isdigit() else 1
    return size


def model_config(cfg, vocab_size: int):
    """The ModelConfig a config describes, without weights: config.json of model.path, else model.preset
    (a "random" model: its spec's architecture with `vocab_size`)."""
    from r2rank_jax.config import compute_dtype
    from r2rank_jax.models.config import LoRAConfig, ModelConfig, load_hf_config
    from r2rank_jax.models.presets import preset_config

    m = cfg.model
    numerics = dict(param_dtype=m.param_dtype, compute_dtype=compute_dtype(m.dtype), remat=m.remat,
                    scan_layers=m.scan_layers, lora=LoRAConfig(rank=m.lora.rank, alpha=m.lora.alpha, targets=m.lora.targets))
    if m.kind == "random":
        return ModelConfig(vocab_size=vocab_size, hidden_size=m.hidden_size, intermediate_size=m.intermediate_size,
                           num_layers=m.num_layers, num_heads=m.num_heads, num_kv_heads=m.num_kv_heads,
                           head_dim=m.head_dim, **numerics)
    if m.kind == "hf" and m.path and (pathlib.Path(m.path) / "config.json").is_file():
        return load_hf_config(m.path, **numerics)
    if not m.preset:
        raise SystemExit(f"{cfg.name}: set model.preset (or a model.path holding config.json) to plan memory")
    return preset_config(m.preset, **numerics)


def abstract_state(cfg, mcfg, mesh):
    """(Static, TrainState of ShapeDtypeStructs carrying their shardings). With LoRA the LLM optimizer
    state covers the adapters only, as in `train.state.create_train_state`."""
    import jax
    from flax import nnx
    from jax.sharding import NamedSharding, PartitionSpec as P

    from r2rank_jax.mesh import MeshError, param_shardings, path_str, spec_for
    from r2rank_jax.models.decoder import Decoder
    from r2rank_jax.models.lora import LoRAParam
    from r2rank_jax.models.head import ScoringHead
    from r2rank_jax.run.builders import optimizer
    from r2rank_jax.train.state import Static, TrainState

    model = nnx.eval_shape(lambda: Decoder(mcfg, rngs=nnx.Rngs(0)))
    head = nnx.eval_shape(lambda: ScoringHead(mcfg.hidden_size, cfg.model.head_hidden, rngs=nnx.Rngs(1)))
    llm_def, llm = nnx.split(model)
    head_def, head_params = nnx.split(head)
    llm_tx, head_tx = optimizer(cfg.rl.llm_optim), optimizer(cfg.rl.head_optim)
    static = Static(llm_def, head_def, llm_tx, head_tx, LoRAParam if mcfg.lora.enabled else None)
    llm_opt = jax.eval_shape(llm_tx.init, static.split_llm(llm)[0])
    head_opt = jax.eval_shape(head_tx.init, head_params)

    def tolerant(tree, prefix=""):
        def one(path, leaf):
            name = (prefix + "/" if prefix else "") + path_str(path)
            try:
                return NamedSharding(mesh, spec_for(name, tuple(leaf.shape), mesh))
            except MeshError:
                if leaf.ndim == 0:          # optimizer counters
                    return NamedSharding(mesh, P())
                raise
        return jax.tree_util.tree_map_with_path(one, tree)

    def put(tree, shardings):
        return jax.tree.map(lambda x, s: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=s), tree, shardings)

    replicated = NamedSharding(mesh, P())
    state = TrainState(
        step=jax.ShapeDtypeStruct((), "int32", sharding=replicated),
        llm=put(llm, param_shardings(llm, mesh)),
        head=put(head_params, param_shardings(head_params, mesh, prefix="head")),
        llm_opt=put(llm_opt, tolerant(llm_opt)),
        head_opt=put(head_opt, tolerant(head_opt, prefix="head")),
        key=jax.ShapeDtypeStruct((2,), "uint32", sharding=replicated))
    return static, state


def _batch_struct(shape, dtype, mesh):
    import jax

    from r2rank_jax.mesh import batch_sharding

    return jax.ShapeDtypeStruct(shape, dtype, sharding=batch_sharding(mesh, len(shape)))


def sft_batch(cfg, mesh) -> dict:
    d, s = cfg.data, cfg.sft
    b, r = s.batch_size, max(s.response_buckets)
    t = max(d.prefix_buckets) + max(d.suffix_buckets) + r
    return {"tokens": _batch_struct((b, t), "int32", mesh), "positions": _batch_struct((b, t), "int32", mesh),
            "loss_mask": _batch_struct((b, r), "bool", mesh), "example_mask": _batch_struct((b,), "bool", mesh)}


def rl_batch(cfg, mesh):
    from r2rank_jax.train.rl_batch import RLBatch

    u, k, r = cfg.rl.batch_users, cfg.data.num_candidates, cfg.rl.max_new_tokens
    p, c = max(cfg.data.prefix_buckets), max(cfg.data.suffix_buckets) + r
    f = lambda shape, dtype: _batch_struct(shape, dtype, mesh)  # noqa: E731
    return RLBatch(prefix_tokens=f((u, p), "int32"), prefix_positions=f((u, p), "int32"),
                   cont_tokens=f((u, k, c), "int32"), cont_positions=f((u, k, c), "int32"),
                   response_mask=f((u, k, r), "bool"), old_logprobs=f((u, k, r), "float32"),
                   score_index=f((u, k), "int32"), relevance=f((u, k), "float32"), candidate_mask=f((u, k), "bool"))


def compile_step(name, step_fn, state, batch, mesh) -> dict:
    import jax

    t0 = time.perf_counter()
    jitted = getattr(step_fn, "jitted", step_fn)
    with jax.set_mesh(mesh):
        compiled = jitted.lower(state, batch).compile()
    m = compiled.memory_analysis()
    gib = 2 ** 30
    peak = m.argument_size_in_bytes + m.output_size_in_bytes - m.alias_size_in_bytes + m.temp_size_in_bytes
    return {"step": name, "compile_s": round(time.perf_counter() - t0, 1),
            "argument_gib": m.argument_size_in_bytes / gib, "output_gib": m.output_size_in_bytes / gib,
            "alias_gib": m.alias_size_in_bytes / gib, "temp_gib": m.temp_size_in_bytes / gib,
            "generated_code_gib": m.generated_code_size_in_bytes / gib, "per_device_gib": peak / gib}


def main(argv: list[str] | None = None) -> int:
    args, overrides = _parse(argv)
    devices = args.devices or _mesh_size(args.mesh)
    # Must happen before jax initializes its CPU backend.
    flags = [f for f in os.environ.get("XLA_FLAGS", "").split() if "xla_force_host_platform_device_count" not in f]
    os.environ["XLA_FLAGS"] = " ".join(flags + [f"--xla_force_host_platform_device_count={devices}"])
    os.environ.setdefault("JAX_PLATFORMS", "cpu")
    import jax

    from r2rank_jax.config import apply_overrides, load_config_file
    from r2rank_jax.mesh import make_mesh
    from r2rank_jax.train.rl import RLConfig, make_train_step
    from r2rank_jax.train.sft import SFTConfig, make_sft_step
    from r2rank_jax.train.state import state_shardings

    if jax.device_count() < devices:
        raise SystemExit(f"only {jax.device_count()} devices available (jax was initialized before the flag?)")
    cfg = apply_overrides(load_config_file(args.config), overrides)
    mesh = make_mesh(args.mesh, jax.devices()[:devices])
    mcfg = model_config(cfg, args.vocab_size)
    static, state = abstract_state(cfg, mcfg, mesh)
    shardings = state_shardings(state)
    reports = []
    steps = [s.strip() for s in args.steps.split(",") if s.strip()]
    if "sft" in steps:
        fn = make_sft_step(static, SFTConfig(cfg.sft.microbatches), None, shardings, mesh)
        reports.append(compile_step("sft", fn, state, sft_batch(cfg, mesh), mesh))
    if "rl" in steps:
        r = cfg.rl
        rl_cfg = RLConfig(num_rankings=r.num_rankings, advantage=r.advantage, baseline=r.baseline, clip_eps=r.clip_eps,
                          temperature=r.temperature, head_grad_into_llm=r.head_grad_into_llm, microbatches=r.microbatches)
        fn = make_train_step(static, rl_cfg, shardings, mesh)
        reports.append(compile_step("rl", fn, state, rl_batch(cfg, mesh), mesh))
    if not reports:
        raise SystemExit(f"--steps={args.steps!r}: expected sft, rl or both")
    worst = max(r["per_device_gib"] for r in reports)
    report = {"config": cfg.name, "mesh": args.mesh, "devices": devices, "hbm_gib": args.hbm_gib,
              "params": sum(x.size for x in jax.tree.leaves(state.llm)),
              "trainable_params": sum(x.size for x in jax.tree.leaves(static.split_llm(state.llm)[0])),
              "model": {"preset": cfg.model.preset, "compute_dtype": mcfg.compute_dtype, "param_dtype": mcfg.param_dtype,
                        "remat": mcfg.remat, "scan_layers": mcfg.scan_layers, "lora_rank": mcfg.lora.rank},
              "batch": {"sft_rows": cfg.sft.batch_size, "sft_microbatches": cfg.sft.microbatches,
                        "rl_users": cfg.rl.batch_users, "candidates": cfg.data.num_candidates,
                        "rl_microbatches": cfg.rl.microbatches, "prefix": max(cfg.data.prefix_buckets),
                        "suffix": max(cfg.data.suffix_buckets), "rationale": cfg.rl.max_new_tokens},
              "steps": reports, "per_device_gib": worst, "fits": worst <= args.hbm_gib}
    for r in reports:
        print(f"{r['step']}: arguments {r['argument_gib']:.2f} GiB + outputs {r['output_gib']:.2f} − aliased "
              f"{r['alias_gib']:.2f} + temporaries {r['temp_gib']:.2f} = {r['per_device_gib']:.2f} GiB per device "
              f"(compiled in {r['compile_s']} s)", file=sys.stderr)
    if args.out:
        pathlib.Path(args.out).write_text(json.dumps(report, indent=2) + "\n")
    print(json.dumps(report))
    print(f"aot {cfg.name} mesh={args.mesh} per_device_gib={worst:.2f} budget_gib={args.hbm_gib:g} "
          f"fits={'true' if report['fits'] else 'false'}")
    return 0 if report["fits"] else 1


if __name__ == "__main__":
    sys.exit(main())
