"""`python -m r2rank_jax.serve` as a process: --port 0 prints the chosen port; bound to 127.0.0.1."""
import http.client
import json
import os
import subprocess
import sys
import time

import pytest


@pytest.mark.slow  # a fresh process imports JAX and transformers: ~10 s idle, ~30 s on a busy machine
def test_cli_serves_on_a_free_loopback_port(tiny_world):
    env = {**os.environ, "JAX_PLATFORMS": "cpu"}
    cmd = [sys.executable, "-m", "r2rank_jax.serve", "--synthetic_tiny", "--tokenizer", str(tiny_world[1]),
           "--port", "0"]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True, env=env)
    try:
        deadline = time.time() + 120
        line = ""
        while time.time() < deadline and not line.startswith("listening on"):
            line = proc.stdout.readline().strip()
            if not line and proc.poll() is not None:
                pytest.fail(f"server exited with {proc.returncode}")
        assert line.startswith("listening on http://127.0.0.1:")
        port = int(line.rsplit(":", 1)[1])
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
        conn.request("GET", "/healthz")
        assert json.loads(conn.getresponse().read()) == {"status": "ok", "model": "synthetic-tiny"}
    finally:
        proc.terminate()
        proc.wait(timeout=30)


def test_cli_rejects_unsupported_options(capsys):
    from r2rank_jax.serve.__main__ import main

    assert main(["--checkpoint", "/nowhere"]) == 2
    assert "go with --config" in capsys.readouterr().err
    assert main(["--config", "configs/debug_cpu.py"]) == 2
    assert "needs --workdir" in capsys.readouterr().err
