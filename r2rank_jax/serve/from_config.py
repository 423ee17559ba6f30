"""Model, tokenizer and scoring head for `serve --config=... --workdir=... [--checkpoint=DIR]`.

The model and tokenizer are built like the training stages build them (`run.build`). Parameters
(LLM and head) come from the checkpoint directory given, else from ``WORKDIR/rl/checkpoints``, else
``WORKDIR/sft/checkpoints`` (latest step); without any, the base model is served. The head counts
as trained when its output layer is non-zero: a fresh `ScoringHead` starts with zero output weights.
"""
from __future__ import annotations

import pathlib
from typing import Any

import numpy as np


def default_checkpoints(workdir: pathlib.Path) -> pathlib.Path | None:
    for stage in ("rl", "sft"):
        directory = workdir / stage / "checkpoints"
        if directory.is_dir() and any(p.name.isdigit() for p in directory.iterdir()):
            return directory
    return None


def head_is_trained(head: Any) -> bool:
    return bool(np.any(np.asarray(head.w2[...]) != 0))


def load_from_config(config_path: str, workdir: str, checkpoint: str | None = None,
                     overrides: dict[str, str] | None = None) -> tuple[Any, Any, Any | None, str]:
    """(model, tokenizer, trained head or None, name for replies)."""
    from flax import nnx

    from r2rank_jax.config import apply_overrides, load_config_file
    from r2rank_jax.run.build import build_model, load_tokenizer
    from r2rank_jax.run.workdir import Workdir
    from r2rank_jax.train.checkpoint import CheckpointConfig, Checkpointer, abstract_like

    cfg = apply_overrides(load_config_file(config_path), overrides or {})
    wd = Workdir(pathlib.Path(workdir))
    ckpt_dir = pathlib.Path(checkpoint) if checkpoint else default_checkpoints(wd.root)
    if ckpt_dir is not None and not ckpt_dir.is_dir():
        raise ValueError(f"--checkpoint {ckpt_dir}: not a directory")
    tokenizer = load_tokenizer(cfg, wd)
    model, head = build_model(cfg, tokenizer)
    if ckpt_dir is None:
        return model, tokenizer, None, cfg.name
    with Checkpointer(CheckpointConfig(directory=str(ckpt_dir), async_save=False)) as ckpt:
        step = ckpt.latest_step()
        if step is None:
            raise ValueError(f"{ckpt_dir}: no finished checkpoint")
        target = {"llm": nnx.split(model)[1], "head": nnx.split(head)[1]}
        params = ckpt.restore_params(abstract_like(target), step=step)
    nnx.update(model, params["llm"])
    nnx.update(head, params["head"])
    return model, tokenizer, head if head_is_trained(head) else None, f"{cfg.name}:{ckpt_dir.parent.name}-{step}"
