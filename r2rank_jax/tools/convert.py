"""Converts a checkpoint (HF directory or GGUF) to a Hugging Face directory through our decoder.

    python -m r2rank_jax.tools.convert --in PATH [--gguf FILE] --out DIR [--dtype float32]

PATH is a HF checkpoint directory, a .gguf file, or the directory holding --gguf FILE. The output
(config.json + safetensors + tokenizer files) loads in transformers.
"""
from __future__ import annotations

import argparse
import json
import pathlib
import sys


def convert(path: str, out: str, gguf: str | None = None, dtype: str | None = None) -> pathlib.Path:
    from r2rank_jax.models.hf_port import export_hf, load_hf

    src = pathlib.Path(path)
    if gguf is not None or src.suffix == ".gguf":
        from r2rank_jax.models.gguf import load_gguf, load_gguf_tokenizer

        model = load_gguf(src, gguf)
        out_dir = export_hf(model, out, dtype=dtype)
        load_gguf_tokenizer(src, gguf).save_pretrained(out_dir)
        return out_dir
    return export_hf(load_hf(src), out, dtype=dtype, tokenizer_from=src)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--in", dest="path", required=True)
    parser.add_argument("--gguf", default=None)
    parser.add_argument("--out", required=True)
    parser.add_argument("--dtype", default=None, choices=["float32", "bfloat16", "float16"],
                        help="dtype of the written tensors (default: as loaded)")
    args = parser.parse_args(argv)
    out = convert(args.path, args.out, args.gguf, args.dtype)
    files = sorted(p.name for p in out.iterdir())
    print(json.dumps({"out": str(out), "files": files}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
