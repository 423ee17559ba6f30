"""CLI: python -m r2rank_jax.serve (--config FILE --workdir DIR [--checkpoint DIR] | --hf_dir DIR | --gguf FILE
       | --synthetic_tiny) [--host H] [--port P]

``--config`` builds the model and tokenizer as the training stages do and restores the LLM and the
scoring head from ``--checkpoint`` (a checkpoints directory; default: ``WORKDIR/rl/checkpoints``, else
``WORKDIR/sft/checkpoints``; see `serve.from_config`). The other model options serve a base model
with an untrained head.

Binds to 127.0.0.1 unless ``--host`` says otherwise; ``--port 0`` picks a free port. Prints
``listening on http://HOST:PORT`` once ready. Generation: `teacher.generator.SamplerGenerator`
(greedy at temperature 0, else temperature/top-p sampling; stop strings).
"""
from __future__ import annotations

import argparse
import logging
import sys


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m r2rank_jax.serve", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--config", default=None, help="configs/NAME.py (with --workdir)")
    p.add_argument("--workdir", default=None, help="the run's workdir (tokenizer, checkpoints)")
    p.add_argument("--checkpoint", default=None, help="checkpoints directory (default: WORKDIR/rl, else WORKDIR/sft)")
    p.add_argument("--hf_dir", default=None, help="Hugging Face checkpoint directory")
    p.add_argument("--gguf", default=None, help="GGUF file")
    p.add_argument("--synthetic_tiny", action="store_true", help="a random tiny model + the synthetic tokenizer")
    p.add_argument("--tokenizer", default=None, help="tokenizer directory (overrides the model's)")
    p.add_argument("--model_name", default=None, help="the id reported in replies (default: from the checkpoint)")
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=8000, help="0 = any free port")
    p.add_argument("--max_tokens_limit", type=int, default=1024)
    p.add_argument("--default_max_tokens", type=int, default=256)
    p.add_argument("--dtype", default="float32", choices=["float32", "bfloat16"])
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    if (args.workdir or args.checkpoint) and not args.config:
        print("error: --workdir and --checkpoint go with --config", file=sys.stderr)
        return 2
    if args.config and not args.workdir:
        print("error: --config needs --workdir (the run's tokenizer and checkpoints)", file=sys.stderr)
        return 2
    from r2rank_jax.serve.engine import Engine
    from r2rank_jax.serve.server import Server
    from r2rank_jax.teacher.generator import SamplerGenerator
    from r2rank_jax.teacher.local_model import load_local_model

    try:
        head = None
        if args.config:
            if args.hf_dir or args.gguf or args.synthetic_tiny:
                raise ValueError("give either --config or one of --hf_dir, --gguf, --synthetic_tiny")
            from r2rank_jax.serve.from_config import load_from_config

            model, tokenizer, head, name = load_from_config(args.config, args.workdir, args.checkpoint)
        else:
            model, tokenizer, name = load_local_model(hf_dir=args.hf_dir, gguf=args.gguf,
                                                      synthetic_tiny=args.synthetic_tiny, tokenizer_dir=args.tokenizer,
                                                      dtype=args.dtype)
        engine = Engine(model, tokenizer, SamplerGenerator(model, tokenizer), name=args.model_name or name, head=head,
                        max_tokens_limit=args.max_tokens_limit, default_max_tokens=args.default_max_tokens)
        server = Server(engine, args.host, args.port)
    except (ValueError, OSError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    if args.host not in ("127.0.0.1", "localhost", "::1"):
        logging.warning("listening on %s: the server has no authentication", args.host)
    print(f"listening on {server.url}", flush=True)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
