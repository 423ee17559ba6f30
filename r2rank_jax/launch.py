"""One launcher for the whole pipeline.

    python -m r2rank_jax.launch --config=configs/X.py [--config.FIELD=VALUE ...] [--mesh=data:2,fsdp:2,tensor:2]
        --workdir=DIR [--resume] [--overwrite] STAGE

STAGE: prepare, synthesize, sft, rl, eval, or all (in that order). The resolved config is written to
WORKDIR/config.json; every stage logs to WORKDIR/metrics.jsonl (and TensorBoard). Multi-host (see
docs/multihost.md): when the environment names a coordinator and process count/id (R2RANK_* or
JAX_* variables, r2rank_jax.distributed), or R2RANK_DISTRIBUTED=1 on a TPU pod, `jax.distributed`
is initialized before anything touches the devices; `sft` and `rl` then run on every process
(checkpoints are written collectively), `prepare` and `synthesize` on process 0 alone, and `eval`
(so `all`) is refused (not multi-host yet).
"""
from __future__ import annotations

import argparse
import os
import pathlib
import sys

STAGES = ("prepare", "synthesize", "sft", "rl", "eval")


def parse(argv: list[str] | None) -> tuple[argparse.Namespace, dict[str, str]]:
    parser = argparse.ArgumentParser(prog="python -m r2rank_jax.launch", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config", required=True, help="configs/NAME.py")
    parser.add_argument("--mesh", default=None, help="e.g. data:2,fsdp:2,tensor:2, or auto (default: no mesh)")
    parser.add_argument("--workdir", required=True)
    parser.add_argument("--resume", action="store_true", help="continue sft/rl from the latest checkpoint")
    parser.add_argument("--overwrite", action="store_true", help="let prepare replace an existing benchmark")
    parser.add_argument("stage", choices=STAGES + ("all",))
    args, rest = parser.parse_known_args(argv)
    overrides = {}
    for item in rest:
        key, sep, value = item.partition("=")
        if not key.startswith("--config.") or not sep:
            parser.error(f"unrecognized argument {item!r} (config overrides look like --config.rl.steps=10)")
        overrides[key[len("--config."):]] = value
    return args, overrides


def maybe_init_distributed() -> bool:
    """`jax.distributed.initialize` when the environment asks for several processes (r2rank_jax.distributed)."""
    from r2rank_jax import distributed

    return distributed.initialize(distributed.settings_from_env(os.environ))


# Stages that run on every process of a multi-host run; the others run on process 0 alone.
COLLECTIVE_STAGES = ("sft", "rl")
PRIMARY_STAGES = ("prepare", "synthesize")


def run_baseline_stage(module, stage: str, cfg, wd, mesh, args) -> dict:
    """Stage `stage` of a baseline method (r2rank_jax.methods); a stage it does not define is skipped."""
    import json

    fn = getattr(module, stage, None)
    if fn is None:
        summary = {"stage": stage, "skipped": f"method {cfg.method!r} has no {stage!r} stage"}
        print(json.dumps(summary))
        return summary
    if stage == "synthesize":
        return fn(cfg, wd)
    return fn(cfg, wd, mesh, resume=args.resume)


def run_stage(stage: str, cfg, wd, mesh, args) -> dict:
    from r2rank_jax import methods

    module = methods.baseline_module(cfg.method)
    if module is not None and stage in ("synthesize", "sft", "rl"):
        return run_baseline_stage(module, stage, cfg, wd, mesh, args)
    if stage == "prepare":
        from r2rank_jax.stages import prepare
        return prepare.run(cfg, wd, overwrite=args.overwrite)
    if stage == "synthesize":
        from r2rank_jax.stages import synthesize
        return synthesize.run(cfg, wd)
    if stage == "sft":
        from r2rank_jax.stages import sft
        return sft.run(cfg, wd, mesh, resume=args.resume)
    if stage == "rl":
        from r2rank_jax.stages import rl
        return rl.run(cfg, wd, mesh, resume=args.resume)
    from r2rank_jax.stages import evaluate
    return evaluate.run(cfg, wd, mesh)


def main(argv: list[str] | None = None) -> int:
    args, overrides = parse(argv)
    maybe_init_distributed()
    from r2rank_jax.config import apply_overrides, load_config_file, write_resolved
    from r2rank_jax.stages.workdir import Workdir

    import jax

    from r2rank_jax import distributed

    cfg = apply_overrides(load_config_file(args.config), overrides)
    wd = Workdir(pathlib.Path(args.workdir))
    stages = STAGES if args.stage == "all" else (args.stage,)
    multi = jax.process_count() > 1
    if multi:
        if not args.mesh:
            raise distributed.DistributedError(f"{distributed.describe()}: a multi-host run needs --mesh spanning "
                                               "every process's devices (e.g. --mesh=auto)")
        unsupported = [s for s in stages if s not in COLLECTIVE_STAGES + PRIMARY_STAGES]
        if unsupported:
            raise distributed.DistributedError(
                f"stage(s) {unsupported} do not run multi-host yet; run them as one process on the workdir "
                f"the multi-host {COLLECTIVE_STAGES} stages wrote")
    if distributed.is_primary():
        write_resolved(cfg, wd.root)
    distributed.barrier("r2rank_launch_config")
    mesh = None
    if args.mesh:
        from r2rank_jax.mesh import make_mesh
        mesh = make_mesh(args.mesh)
    for stage in stages:
        if multi and stage in PRIMARY_STAGES:
            result = run_stage(stage, cfg, wd, None, args) if distributed.is_primary() else {}
            distributed.barrier(f"r2rank_stage_{stage}")
        else:
            result = run_stage(stage, cfg, wd, mesh, args)
        if isinstance(result, dict) and result.get("preempted"):
            return 0
    return 0


if __name__ == "__main__":
    sys.exit(main())
