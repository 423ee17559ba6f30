"""Serving a model: an OpenAI-compatible ``/v1/chat/completions`` endpoint and R2Rank ``/v1/rank``.

    python -m r2rank_jax.serve (--hf_dir DIR | --gguf FILE | --synthetic_tiny) [--host 127.0.0.1] [--port 0]

`engine.Engine` holds the model; `server.Server` is the HTTP front end; `__main__` the CLI.
"""
