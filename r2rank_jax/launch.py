"""One launcher for the whole pipeline.

    python -m r2rank_jax.launch --config=configs/X.py [--config.FIELD=VALUE ...] [--mesh=data:2,fsdp:2,tensor:2]
        --workdir=DIR [--resume] [--overwrite] STAGE

STAGE: prepare, synthesize, sft, rl, eval, or all (in that order). `prepare` and `eval` are shared by
every method; `synthesize`, `sft` and `rl` are the run's method's (`--config.method`, registered in
r2rank_jax.methods): a stage the method lacks is skipped with a note. The resolved config is written to
WORKDIR/config.json; every stage logs to WORKDIR/metrics.jsonl (and TensorBoard); after `eval` the run
report is written to WORKDIR/eval/report.html (r2rank_jax.report). Multi-host (see
docs/multihost.md): when the environment names a coordinator and process count/id (R2RANK_* or
JAX_* variables, r2rank_jax.distributed), or R2RANK_DISTRIBUTED=1 on a TPU pod, `jax.distributed`
is initialized before anything touches the devices; `sft` and `rl` then run on every process
(checkpoints are written collectively), `prepare` and `synthesize` on process 0 alone, and `eval` on
every process, each scoring its own block of users (process 0 merges them, writes the results and
the report).
"""
from __future__ import annotations

import argparse
import dataclasses
import os
import pathlib
import sys

STAGES = ("prepare", "synthesize", "sft", "rl", "eval")


def _epilog() -> str:
    from r2rank_jax.methods import registry

    return "methods (--config.method=NAME) and their stages:\n" + registry.describe()


def parse(argv: list[str] | None) -> tuple[argparse.Namespace, dict[str, str]]:
    # The registry imports every method module: only for --help.
    epilog = _epilog() if {"-h", "--help"} & set(sys.argv[1:] if argv is None else argv) else None
    parser = argparse.ArgumentParser(prog="python -m r2rank_jax.launch", description=__doc__, epilog=epilog,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config", required=True, help="configs/NAME.py")
    parser.add_argument("--mesh", default=None, help="e.g. data:2,fsdp:2,tensor:2, or auto (default: no mesh)")
    parser.add_argument("--workdir", required=True)
    parser.add_argument("--resume", action="store_true", help="continue sft/rl from the latest checkpoint, synthesize from its ledger, eval from its score journals")
    parser.add_argument("--overwrite", action="store_true", help="let prepare replace an existing benchmark")
    parser.add_argument("stage", choices=STAGES + ("all",))
    argv = list(sys.argv[1:] if argv is None else argv)
    # Overrides are taken out first: argparse reads an option word holding a space ("--config.eval.
    # baseline_args=sasrec --epochs 60") as a positional.
    config_items = [a for a in argv if a.startswith("--config.")]
    args, rest = parser.parse_known_args([a for a in argv if not a.startswith("--config.")])
    overrides = {}
    for item in config_items + rest:
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
COLLECTIVE_STAGES = ("sft", "rl", "eval")
PRIMARY_STAGES = ("prepare", "synthesize")


def run_stage(stage: str, ctx) -> dict:
    """The one dispatcher: the shared `prepare` and `eval`, or the run's method's own stage (skipped with a
    note when the method lacks it)."""
    import json

    from r2rank_jax.methods import registry

    method = registry.get(ctx.cfg.method)
    if stage == "prepare":
        from r2rank_jax.stages import prepare
        return prepare.run(ctx)
    if stage == "eval":
        from r2rank_jax.methods.eval_plan import eval_plan
        from r2rank_jax.report import write_report
        from r2rank_jax.stages import evaluate
        summary = evaluate.run(ctx, eval_plan(ctx.cfg))
        if "results" in summary:           # multi-host: process 0 alone writes the results and the report
            summary["report"] = str(write_report(ctx.wd.root))       # WORKDIR/eval/report.html
            print(f"report: {summary['report']}", file=sys.stderr)
        return summary
    fn = getattr(method, stage, None)
    if fn is None:
        summary = {"stage": stage, "skipped": f"method {method.name!r} has no {stage!r} stage"}
        print(json.dumps(summary))
        return summary
    return fn(ctx)


def resolved_plans(cfg) -> dict:
    """Every library config the stages build from `cfg`, shared and per registered method ({name: config, or
    the error it raises}). Pure: builds no model, reads no file."""
    from r2rank_jax.methods import registry
    from r2rank_jax.methods.eval_plan import eval_plan
    from r2rank_jax.run import build, builders, teacher
    from r2rank_jax.stages import prepare

    shared = {
        "prepare": lambda: prepare.plan(cfg),
        "tokenizer": lambda: build.tokenizer_plan(cfg),
        "model": lambda: build.model_plan(cfg),
        "prompts": lambda: builders.prompt_configs(cfg, cfg.rl.batch_users),
        "sampler.buckets": lambda: builders.run_buckets(cfg),
        "teacher": lambda: teacher.from_experiment(cfg),
        "eval.plan": lambda: (eval_plan(cfg).order, tuple(eval_plan(cfg).unavailable)),
        "eval": lambda: cfg.eval,          # read whole by stages/evaluate.py and the scorers
    }
    out = {}
    for name, fn in shared.items():
        try:
            out[name] = fn()
        except (ValueError, TypeError) as e:
            out[name] = ("error", type(e).__name__, str(e))
    for method in registry.known():
        try:
            out[f"method.{method}"] = registry.get(method).plans(cfg)
        except (ValueError, TypeError) as e:
            out[f"method.{method}"] = ("error", type(e).__name__, str(e))
    return out


def main(argv: list[str] | None = None) -> int:
    args, overrides = parse(argv)
    maybe_init_distributed()
    from r2rank_jax.config import apply_overrides, load_config_file, resolve_backend_defaults, write_resolved
    from r2rank_jax.methods import registry
    from r2rank_jax.run.context import RunContext
    from r2rank_jax.run.workdir import Workdir

    import jax

    from r2rank_jax import distributed

    cfg = resolve_backend_defaults(apply_overrides(load_config_file(args.config), overrides))
    registry.get(cfg.method)                # an unknown method fails before anything is written
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
    ctx = RunContext(cfg, wd, mesh, resume=args.resume, overwrite=args.overwrite)
    for stage in stages:
        if multi and stage in PRIMARY_STAGES:
            result = run_stage(stage, dataclasses.replace(ctx, mesh=None)) if distributed.is_primary() else {}
            distributed.barrier(f"r2rank_stage_{stage}")
        else:
            result = run_stage(stage, ctx)
        if isinstance(result, dict) and result.get("preempted"):
            return 0
    return 0


if __name__ == "__main__":
    sys.exit(main())
