"""Export a training checkpoint to a Hugging Face directory plus the scoring head as safetensors.

    python -m r2rank_jax.tools.export_checkpoint --checkpoint WORKDIR/checkpoints --out OUT_DIR
        [--step N | --best] [--tokenizer TOKDIR] [--dtype bfloat16]

``--checkpoint`` is the checkpoint directory of a run (holding ``<step>/`` subdirectories); the
default step is the latest. The model and head configs come from the checkpoint's own metadata, so
nothing else is needed. Writes ``OUT_DIR/config.json`` + ``model.safetensors`` (loadable by
transformers and `hf_port.load_hf`), ``OUT_DIR/head.safetensors`` (tensors ``w1 [D, hidden]``,
``b1``, ``w2 [hidden, 1]``, ``b2``; metadata ``head_config`` as JSON) and the tokenizer files when a
tokenizer directory is given or recorded in the metadata.
"""
from __future__ import annotations

import argparse
import json
import pathlib
import sys

import jax
import numpy as np
from flax import nnx

from r2rank_jax.models.decoder import Decoder
from r2rank_jax.models.head import ScoringHead
from r2rank_jax.models.hf_port import export_hf
from r2rank_jax.models.safetensors_io import CheckpointError, write_safetensors
from r2rank_jax.train.checkpoint import Checkpointer, model_config_from_json, with_rule_shardings

HEAD_FILE = "head.safetensors"


def export_checkpoint(checkpoint_dir: str | pathlib.Path, out_dir: str | pathlib.Path, step: int | None = None,
                      best: bool = False, tokenizer: str | None = None, dtype: str | None = None) -> pathlib.Path:
    """Writes the HF directory and head weights of one checkpoint step (module docstring); returns ``out_dir``."""
    ckpt_path = pathlib.Path(checkpoint_dir)
    if not ckpt_path.is_dir():
        raise CheckpointError(f"{ckpt_path}: checkpoint directory not found")
    ckpt = Checkpointer.reopen(ckpt_path)
    try:
        if best:
            if not ckpt.config.best_metric:
                raise CheckpointError(f"{ckpt_path}: the run tracked no best metric; pass --step or nothing (latest)")
            step = ckpt.best_step()
        meta = ckpt.read_metadata(step)
        source = f"{ckpt_path}/{step if step is not None else ckpt.latest_step()}/meta"
        if "model_config" not in meta or "head_config" not in meta:
            raise CheckpointError(f"{source}: metadata lacks model_config/head_config; cannot rebuild the model")
        cfg = model_config_from_json(meta["model_config"], source)
        hc = meta["head_config"]
        model = nnx.eval_shape(lambda: Decoder(cfg, rngs=nnx.Rngs(0)))
        head = nnx.eval_shape(lambda: ScoringHead(hc["hidden_size"], hc["head_hidden"], rngs=nnx.Rngs(0),
                                                   param_dtype=np.dtype(hc["param_dtype"])))
        llm_def, llm_abs = nnx.split(model)
        head_def, head_abs = nnx.split(head)
        params = ckpt.restore_params({"llm": with_rule_shardings(llm_abs, None),
                                      "head": with_rule_shardings(head_abs, None)}, step)
    finally:
        ckpt.close()
    out = pathlib.Path(out_dir)
    tok = tokenizer or meta.get("tokenizer")
    if tok is not None and not pathlib.Path(tok).is_dir():
        print(f"warning: tokenizer directory {tok} not found; exporting without tokenizer files", file=sys.stderr)
        tok = None
    export_hf(nnx.merge(llm_def, params["llm"]), out, dtype=dtype, tokenizer_from=tok)
    head_module = nnx.merge(head_def, params["head"])
    tensors = [(name, np.asarray(jax.device_get(getattr(head_module, name)[...]))) for name in ("w1", "b1", "w2", "b2")]
    write_safetensors(out / HEAD_FILE, tensors, metadata={"head_config": json.dumps(hc)})
    return out


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m r2rank_jax.tools.export_checkpoint", description=__doc__.split("\n\n")[0])
    p.add_argument("--checkpoint", required=True, help="checkpoint directory of a run (holds <step>/ subdirectories)")
    p.add_argument("--out", required=True)
    which = p.add_mutually_exclusive_group()
    which.add_argument("--step", type=int, default=None)
    which.add_argument("--best", action="store_true", help="the best step by the run's tracked metric")
    p.add_argument("--tokenizer", default=None, help="tokenizer directory to copy (default: the one in the metadata)")
    p.add_argument("--dtype", default=None, choices=("float32", "bfloat16", "float16"))
    args = p.parse_args(argv)
    try:
        out = export_checkpoint(args.checkpoint, args.out, args.step, args.best, args.tokenizer, args.dtype)
    except CheckpointError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    print(json.dumps({"out": str(out)}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
