"""tools/aot_memory on the debug config: the budget check can fail, the memory figures are the state's
real size, and LoRA plans optimizer state for the adapters only."""
import json
import os
import pathlib
import re

import numpy as np
import pytest

from r2rank_jax.tools import aot_memory

DEBUG = str(pathlib.Path(__file__).resolve().parents[2] / "configs" / "debug_cpu.py")
LAST = re.compile(r"^aot debug_cpu mesh=(\S+) per_device_gib=([0-9.]+) budget_gib=(\S+) fits=(true|false)$")


def run(monkeypatch, capsys, *args):
    # main() rewrites XLA_FLAGS for its own process; keep the test session's value for later subprocesses.
    monkeypatch.setenv("XLA_FLAGS", os.environ.get("XLA_FLAGS", ""))
    rc = aot_memory.main([f"--config={DEBUG}", "--vocab_size=512", *args])
    lines = capsys.readouterr().out.strip().splitlines()
    return rc, json.loads(lines[-2]), LAST.match(lines[-1])


def test_budget_decides_fits_and_exit_status(monkeypatch, capsys):
    rc, report, last = run(monkeypatch, capsys, "--mesh=fsdp:2", "--hbm_gib=64")
    assert rc == 0 and last and last.group(4) == "true" and last.group(1) == "fsdp:2"
    assert [s["step"] for s in report["steps"]] == ["sft", "rl"]
    assert float(last.group(2)) == pytest.approx(report["per_device_gib"], abs=0.006)
    assert report["per_device_gib"] == max(s["per_device_gib"] for s in report["steps"])
    tiny = report["steps"][1]["per_device_gib"] / 2
    rc, report, last = run(monkeypatch, capsys, "--mesh=fsdp:2", f"--hbm_gib={tiny}", "--steps=rl")
    assert rc == 1 and last and last.group(4) == "false" and report["fits"] is False


def _state_bytes(report_params: int, trainable: int, head_params: int) -> int:
    # fp32 params + Adam's two fp32 moments for the trained part, for the LLM and the head.
    return 4 * (report_params + 2 * trainable + 3 * head_params)


def test_arguments_are_the_state_and_batch(monkeypatch, capsys):
    """On one device the compiled RL step's arguments are exactly the train state plus the batch."""
    from r2rank_jax.config import load_config_file

    cfg = load_config_file(DEBUG)
    rc, report, _ = run(monkeypatch, capsys, "--mesh=fsdp:1", "--steps=rl")
    assert rc == 0
    h, hh = cfg.model.hidden_size, cfg.model.head_hidden
    head_params = h * hh + hh + hh + 1                      # Linear(h, hh) + Linear(hh, 1)
    u, k, r = cfg.rl.batch_users, cfg.data.num_candidates, cfg.rl.max_new_tokens
    p, c = max(cfg.data.prefix_buckets), max(cfg.data.suffix_buckets) + r
    batch = 4 * (2 * u * p + 2 * u * k * c + u * k * r + u * k + u * k) + (u * k * r + u * k)  # int32/f32 + bool
    scalars = 4 + 8 + 2 * 4 * 2                               # step, key, Adam counts (llm, head)
    expected = _state_bytes(report["params"], report["trainable_params"], head_params) + batch + scalars
    got = report["steps"][0]["argument_gib"] * 2 ** 30
    assert got == pytest.approx(expected, rel=0.01)


def test_lora_plans_optimizer_state_for_adapters_only(monkeypatch, capsys):
    from r2rank_jax.config import load_config_file

    cfg = load_config_file(DEBUG)
    m, rank = cfg.model, 4
    rc, full, _ = run(monkeypatch, capsys, "--mesh=fsdp:1", "--steps=rl")
    rc, lora, _ = run(monkeypatch, capsys, "--mesh=fsdp:1", "--steps=rl", f"--config.model.lora.rank={rank}")
    assert rc == 0 and full["trainable_params"] == full["params"]
    q, kv = m.num_heads * m.head_dim, m.num_kv_heads * m.head_dim
    shapes = {"q": (m.hidden_size, q), "k": (m.hidden_size, kv), "v": (m.hidden_size, kv), "o": (q, m.hidden_size),
              "gate": (m.hidden_size, m.intermediate_size), "up": (m.hidden_size, m.intermediate_size),
              "down": (m.intermediate_size, m.hidden_size)}
    adapters = m.num_layers * sum(rank * (a + b) for a, b in (shapes[t] for t in m.lora.targets))
    assert lora["trainable_params"] == adapters
    assert lora["params"] == full["params"] + adapters
    assert lora["model"]["lora_rank"] == rank
    # Adam moments of the base weights are gone: the arguments shrink by about 2 x 4 bytes per base weight.
    saved = (full["steps"][0]["argument_gib"] - lora["steps"][0]["argument_gib"]) * 2 ** 30
    assert saved == pytest.approx(8 * full["params"] - 12 * adapters, rel=0.02)
    assert np.isfinite(lora["per_device_gib"])
