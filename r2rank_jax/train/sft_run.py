"""SFT warm start from the command line (until the `launch` CLI exists, and for preemption tests).

    python -m r2rank_jax.train.sft_run --corpus sft.jsonl --tokenizer TOKDIR --workdir WORKDIR \\
        (--init_hf HF_DIR | --model_config model.json) --steps 500 [--eval_corpus heldout.jsonl] \\
        [--mesh data:2,fsdp:2,tensor:2] [--resume] [...]

Writes ``WORKDIR/sft_config.json`` (the resolved arguments), ``WORKDIR/metrics.jsonl``,
``WORKDIR/tensorboard/`` and ``WORKDIR/checkpoints/<step>/`` (`checkpoint`). ``--model_config`` is a
JSON object of `ModelConfig` fields (random initialization, for tests and demos). ``--resume``
continues from the latest checkpoint (a fresh start when there is none; without it, existing
checkpoints are an error). Multi-host: the same environment as `r2rank_jax.launch` (docs/multihost.md);
``--batch_size`` is the global batch. SIGTERM saves a checkpoint and exits 0; input and checkpoint errors
exit 2. The corpus format is `sft_data`'s.
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import pathlib
import sys
from typing import Any

import jax
from flax import nnx

from r2rank_jax import distributed
from r2rank_jax.models.decoder import Decoder
from r2rank_jax.models.head import ScoringHead
from r2rank_jax.train import sft_data
from r2rank_jax.train.checkpoint import CheckpointConfig, Checkpointer, model_config_from_json, train_metadata
from r2rank_jax.train.logging import MetricsLogger
from r2rank_jax.train.loop import LoopConfig, run_loop
from r2rank_jax.train.optim import OptimConfig, learning_rate_schedule, make_optimizer
from r2rank_jax.train.sft import SFTConfig, make_sft_step, put_batch
from r2rank_jax.train.state import create_train_state, state_shardings


def _ints(text: str) -> tuple[int, ...]:
    return tuple(int(x) for x in text.split(",") if x.strip())


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m r2rank_jax.train.sft_run", description=__doc__.split("\n\n")[0])
    p.add_argument("--corpus", required=True, help="SFT corpus JSONL (format: r2rank_jax.train.sft_data)")
    p.add_argument("--eval_corpus", help="held-out SFT corpus for eval_loss / decision_acc")
    p.add_argument("--tokenizer", required=True, help="transformers tokenizer directory")
    p.add_argument("--workdir", required=True)
    model = p.add_mutually_exclusive_group(required=True)
    model.add_argument("--init_hf", help="Hugging Face checkpoint directory to start from")
    model.add_argument("--model_config", help="JSON file of ModelConfig fields (random initialization)")
    p.add_argument("--remat", choices=("none", "full", "dots"), default=None)
    p.add_argument("--head_hidden", type=int, default=256)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--mesh", default="none", help='"none" (one device), "auto" or e.g. "data:2,fsdp:2,tensor:2"')
    p.add_argument("--steps", type=int, required=True, help="total steps (the schedule's horizon)")
    p.add_argument("--stop_at", type=int, help="end this run at this step (checkpointed)")
    p.add_argument("--batch_size", type=int, default=8)
    p.add_argument("--microbatches", type=int, default=1)
    p.add_argument("--logit_chunk", type=int, default=64)
    p.add_argument("--prompt_buckets", type=_ints, default=(256, 512))
    p.add_argument("--response_buckets", type=_ints, default=(128, 256))
    p.add_argument("--lr", type=float, default=1e-5)
    p.add_argument("--warmup", type=int, default=0)
    p.add_argument("--decay_steps", type=int, default=None, help="cosine decay length (default: steps - warmup)")
    p.add_argument("--final_lr_ratio", type=float, default=0.1)
    p.add_argument("--weight_decay", type=float, default=0.0)
    p.add_argument("--max_grad_norm", type=float, default=1.0)
    p.add_argument("--log_every", type=int, default=10)
    p.add_argument("--eval_every", type=int, default=0)
    p.add_argument("--save_every", type=int, default=0)
    p.add_argument("--keep_last", type=int, default=3)
    p.add_argument("--best_metric", default=None, help="e.g. eval_loss (min) or decision_acc (with --best_mode max)")
    p.add_argument("--best_mode", choices=("min", "max"), default="min")
    p.add_argument("--sync_save", action="store_true", help="write checkpoints synchronously")
    p.add_argument("--resume", action="store_true")
    p.add_argument("--throttle", type=float, default=0.0, help="seconds to sleep after each step (tests)")
    p.add_argument("--no_progress", action="store_true")
    return p.parse_args(argv)


def build_model(args: argparse.Namespace, mesh) -> Decoder:
    overrides = {} if args.remat is None else {"remat": args.remat}
    if args.init_hf:
        from r2rank_jax.models.hf_port import load_hf

        return load_hf(args.init_hf, mesh, **overrides)
    path = pathlib.Path(args.model_config)
    try:
        cfg = model_config_from_json(json.loads(path.read_text()), source=str(path))
    except json.JSONDecodeError as e:
        raise SystemExit(f"error: {path}: invalid JSON at line {e.lineno}: {e.msg}") from None
    return Decoder(cfg.replace(**overrides), rngs=nnx.Rngs(args.seed))


@dataclasses.dataclass
class Setup:
    """Everything a run needs, built from the arguments (`build`) and run by `execute`."""

    args: argparse.Namespace
    workdir: pathlib.Path
    mesh: Any
    static: Any
    state: Any
    step_fn: Any
    data_iter: Any
    eval_fn: Any
    checkpoint: CheckpointConfig
    metadata: dict[str, Any]
    loop: LoopConfig


def build(args: argparse.Namespace, step_fn: Any = None) -> Setup:
    """Model, state, data and step of a run; ``step_fn`` reuses an already compiled step of the same model."""
    from transformers import AutoTokenizer

    from r2rank_jax.mesh import make_mesh
    from r2rank_jax.train.sft_eval import make_sft_eval

    workdir = pathlib.Path(args.workdir)
    if distributed.is_primary():
        workdir.mkdir(parents=True, exist_ok=True)
        (workdir / "sft_config.json").write_text(json.dumps(vars(args), indent=1, default=list) + "\n")
    mesh = None if args.mesh == "none" else make_mesh(args.mesh)
    if mesh is None and jax.process_count() > 1:
        raise SystemExit(f"error: {distributed.describe()}: a multi-host run needs --mesh over every process's devices")
    tokenizer = AutoTokenizer.from_pretrained(args.tokenizer)
    model = build_model(args, mesh)
    if len(tokenizer) > model.config.vocab_size:
        raise SystemExit(f"error: the tokenizer has {len(tokenizer)} tokens, the model only {model.config.vocab_size}")
    head = ScoringHead(model.config.hidden_size, args.head_hidden, rngs=nnx.Rngs(args.seed + 1))
    decay = args.decay_steps if args.decay_steps is not None else max(args.steps - args.warmup, 0)
    opt = OptimConfig(learning_rate=args.lr, warmup_steps=args.warmup, decay_steps=decay,
                      final_lr_ratio=args.final_lr_ratio, weight_decay=args.weight_decay, max_grad_norm=args.max_grad_norm)
    static, state = create_train_state(model, head, make_optimizer(opt), make_optimizer(OptimConfig(args.lr)),
                                       jax.random.PRNGKey(args.seed), mesh)
    if step_fn is None:
        step_fn = make_sft_step(static, SFTConfig(args.microbatches, args.logit_chunk), learning_rate_schedule(opt),
                                state_shardings(state), mesh)
    shard_index, shard_count = distributed.host_batch_shard(mesh)   # multi-host: this host's block of each batch
    data_cfg = sft_data.SFTDataConfig(batch_size=distributed.host_batch_size(args.batch_size, mesh, "--batch_size"),
                                      prompt_buckets=args.prompt_buckets, response_buckets=args.response_buckets,
                                      seed=args.seed, shard_index=shard_index, shard_count=shard_count)
    examples = sft_data.load_corpus(args.corpus, tokenizer)
    data_iter = sft_data.make_iterator(examples, data_cfg, tokenizer.pad_token_id)
    eval_fn = None
    if args.eval_corpus:
        eval_fn = make_sft_eval(static, sft_data.load_corpus(args.eval_corpus, tokenizer), tokenizer, data_cfg,
                                args.batch_size, mesh, args.logit_chunk)
    ckpt_cfg = CheckpointConfig(str(workdir / "checkpoints"), keep_last=args.keep_last, best_metric=args.best_metric,
                                best_mode=args.best_mode, async_save=not args.sync_save)
    meta = train_metadata(model.config, head, stage="sft", tokenizer=str(pathlib.Path(args.tokenizer).absolute()))
    loop_cfg = LoopConfig(total_steps=args.steps, stop_at=args.stop_at, log_every=args.log_every,
                          eval_every=args.eval_every, save_every=args.save_every, resume=args.resume,
                          throttle_s=args.throttle)
    return Setup(args, workdir, mesh, static, state, step_fn, data_iter, eval_fn, ckpt_cfg, meta, loop_cfg)


def execute(setup: Setup) -> dict[str, Any]:
    """Runs the loop of a built setup; returns a summary."""
    mesh = setup.mesh
    with Checkpointer(setup.checkpoint, setup.metadata) as ckpt, \
            MetricsLogger(setup.workdir, "sft", setup.args.steps, progress=not setup.args.no_progress) as logger:
        result = run_loop(setup.loop, setup.state, setup.step_fn, setup.data_iter, logger=logger, checkpointer=ckpt,
                          put=lambda b: put_batch(b, mesh), eval_fn=setup.eval_fn, stage="sft")
        if result.preempted:
            logger.write("preempted: checkpoint written, exiting 0")
    return {"step": result.step, "preempted": result.preempted, "resumed_from": result.resumed_from,
            "checkpoints": setup.checkpoint.directory}


def main(argv: list[str] | None = None) -> int:
    from r2rank_jax.data.errors import DataError
    from r2rank_jax.models.safetensors_io import CheckpointError

    args = parse_args(argv)
    distributed.initialize(distributed.settings_from_env())
    try:
        summary = execute(build(args))
    except (DataError, CheckpointError, FileExistsError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    print(json.dumps(summary))
    return 0


if __name__ == "__main__":
    sys.exit(main())
