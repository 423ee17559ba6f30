"""Multi-host acceptance: the launcher's `sft` stage run as 2 `jax.distributed` processes on CPU (127.0.0.1,
2 devices each, mesh fsdp:4 across both: batch rows and parameters sharded over the processes) matches
one process on 4 devices (same mesh) with the same global batch:
per-step losses, held-out eval metrics and the final parameters (read back from the collectively
written checkpoint). Also: the environment parsing and the host input shards (`HostSlice`).
"""
import dataclasses
import json
import pathlib
import shutil

import jax
import numpy as np
import pytest
from multihost_harness import spawn

from r2rank_jax import distributed

REPO = pathlib.Path(__file__).resolve().parents[2]
DEBUG = str(REPO / "configs" / "debug_cpu.py")
# 2 steps, evaluation (and so a log line and a checkpoint) after each.
SFT_OVERRIDES = {"sft.steps": "2", "sft.eval_every": "1", "sft.checkpoint_every": "1"}
MESH = "fsdp:4"
TIMEOUT_S = 240


# ---- environment ---------------------------------------------------------------------------------

def test_settings_from_env():
    assert distributed.settings_from_env({}) is None
    assert distributed.settings_from_env({"R2RANK_DISTRIBUTED": "0", "JAX_COORDINATOR_ADDRESS": "h:1"}) is None
    s = distributed.settings_from_env({"JAX_COORDINATOR_ADDRESS": "10.0.0.1:1234", "JAX_NUM_PROCESSES": "4",
                                       "JAX_PROCESS_ID": "3"})
    assert (s.coordinator_address, s.num_processes, s.process_id) == ("10.0.0.1:1234", 4, 3)
    s = distributed.settings_from_env({"R2RANK_COORDINATOR_ADDRESS": "a:1", "JAX_COORDINATOR_ADDRESS": "b:2",
                                       "R2RANK_NUM_PROCESSES": "2", "R2RANK_PROCESS_ID": "0",
                                       "R2RANK_INIT_TIMEOUT": "30"})
    assert (s.coordinator_address, s.num_processes, s.process_id, s.initialization_timeout) == ("a:1", 2, 0, 30)
    assert s.shutdown_timeout == 3600
    env = {"JAX_COORDINATOR_ADDRESS": "h:1", "JAX_NUM_PROCESSES": "2", "JAX_PROCESS_ID": "1"}
    s = distributed.settings_from_env({**env, "R2RANK_SHUTDOWN_TIMEOUT": "120"})
    assert (s.initialization_timeout, s.shutdown_timeout) == (300, 120)
    with pytest.raises(distributed.DistributedError, match="shutdown_timeout must be a positive"):
        distributed.settings_from_env({**env, "R2RANK_SHUTDOWN_TIMEOUT": "0"})
    s = distributed.settings_from_env({"R2RANK_DISTRIBUTED": "1"})            # TPU pod: JAX auto-detects
    assert (s.coordinator_address, s.num_processes, s.process_id) == (None, None, None)
    for env, message in [({"R2RANK_NUM_PROCESSES": "2"}, "or neither"),
                         ({"JAX_NUM_PROCESSES": "2", "JAX_PROCESS_ID": "2", "JAX_COORDINATOR_ADDRESS": "h:1"},
                          "0 <= process_id"),
                         ({"JAX_NUM_PROCESSES": "2", "JAX_PROCESS_ID": "0"}, "need a coordinator"),
                         ({"JAX_COORDINATOR_ADDRESS": "h:1", "JAX_NUM_PROCESSES": "two", "JAX_PROCESS_ID": "0"},
                          "JAX_NUM_PROCESSES='two' is not an integer"),
                         ({"JAX_COORDINATOR_ADDRESS": "nohost"}, "host:port")]:
        with pytest.raises(distributed.DistributedError, match=message):
            distributed.settings_from_env(env)


# ---- host shards ---------------------------------------------------------------------------------

def _examples(n: int) -> list:
    from r2rank_jax.train.sft_data import SFTExample

    rng = np.random.default_rng(0)
    return [SFTExample(str(i), str(i), i % 2, tuple(range(1, 2 + int(rng.integers(1, 14)))),
                       tuple(range(1, 2 + int(rng.integers(1, 6))))) for i in range(n)]


@pytest.mark.parametrize("n, drop", [(23, True), (23, False), (24, True)])
def test_host_shards_are_blocks_of_the_one_process_batches(n, drop):
    """Host i's rows of each step are rows [i*b, (i+1)*b) of the one-process batch of b * hosts rows, epoch
    after epoch (the shuffle reseeds per epoch), with the global batch's buckets (equal shapes on every host)."""
    from r2rank_jax.train.sft_data import SFTDataConfig, make_iterator

    b, hosts, epochs = 3, 2, 3
    cfg = SFTDataConfig(batch_size=b * hosts, prompt_buckets=(4, 8, 16), response_buckets=(4, 8), seed=5,
                        num_epochs=epochs, drop_remainder=drop)
    one = list(make_iterator(_examples(n), cfg, pad_id=0))
    per_host = [list(make_iterator(_examples(n), dataclasses.replace(cfg, batch_size=b, shard_index=i,
                                                                   shard_count=hosts), pad_id=0))
                for i in range(hosts)]
    assert [len(h) for h in per_host] == [len(one)] * hosts == [epochs * (n // 6 if drop else -(-n // 6))] * hosts
    own_bucket_differs = False
    for k, batch in enumerate(one):
        for i, host in enumerate(per_host):
            assert host[k].keys() == batch.keys()
            for key, value in batch.items():
                np.testing.assert_array_equal(host[k][key], value[i * b:(i + 1) * b], err_msg=f"{k} {i} {key}")
            own = host[k]["prompt_lengths"][host[k]["example_mask"]]
            own_bucket_differs |= own.size > 0 and (own.max() <= 8) != (batch["prompt_lengths"].max() <= 8)
    assert own_bucket_differs      # some host's own rows would have picked a smaller bucket than the batch's
    users = [u for batch in one[:len(one) // epochs] for u, m in zip(batch["user_ids"], batch["example_mask"]) if m]
    assert len(users) == len(set(users)) == (n // 6 * 6 if drop else n)


# ---- two processes vs one ------------------------------------------------------------------------

def _spawn_two(workdir: pathlib.Path) -> list[str]:
    """Runs `launch ... sft` as processes 0 and 1 of a 2-process job; returns their outputs."""
    return spawn(["-m", "r2rank_jax.launch", f"--config={DEBUG}", f"--workdir={workdir}", f"--mesh={MESH}",
                  *(f"--config.{k}={v}" for k, v in SFT_OVERRIDES.items()), "sft"], TIMEOUT_S, what="sft run")


def _sft_records(workdir: pathlib.Path) -> list[dict]:
    rows = [json.loads(line) for line in (workdir / "metrics.jsonl").read_text().splitlines()]
    return [r for r in rows if r["stage"] in ("sft", "sft_eval")]


def _final_params(workdir: pathlib.Path, step: int) -> dict:
    from flax import nnx

    from r2rank_jax.config import load_config_file
    from r2rank_jax.run.build import build_model, load_tokenizer
    from r2rank_jax.run.workdir import Workdir
    from r2rank_jax.train.checkpoint import CheckpointConfig, Checkpointer, abstract_like

    cfg, wd = load_config_file(DEBUG), Workdir(workdir)
    model, head = build_model(cfg, load_tokenizer(cfg, wd))
    target = {"llm": nnx.split(model)[1], "head": nnx.split(head)[1]}
    with Checkpointer(CheckpointConfig(directory=str(workdir / "sft" / "checkpoints"))) as ckpt:
        params = ckpt.restore_params(abstract_like(target), step=step)
    return jax.tree.map(np.asarray, params)


@pytest.mark.slow
def test_two_process_sft_matches_one_process(tmp_path):
    from r2rank_jax import launch
    from r2rank_jax.config import apply_overrides, load_config_file
    from r2rank_jax.mesh import make_mesh
    from r2rank_jax.methods.r2rank import sft
    from r2rank_jax.run.context import RunContext
    from r2rank_jax.run.workdir import Workdir

    base = tmp_path / "base"
    assert launch.main([f"--config={DEBUG}", f"--workdir={base}", "prepare"]) == 0
    assert launch.main([f"--config={DEBUG}", f"--workdir={base}", "synthesize"]) == 0
    one, two = tmp_path / "one", tmp_path / "two"
    shutil.copytree(base, one)
    shutil.copytree(base, two)

    # One process, 4 of this test process's (8) CPU devices, global batch sft.batch_size = 4.
    cfg = apply_overrides(load_config_file(DEBUG), SFT_OVERRIDES)
    sft.run(RunContext(cfg, Workdir(one), make_mesh(MESH, devices=jax.devices()[:4])))
    _spawn_two(two)

    ref, got = _sft_records(one), _sft_records(two)
    assert [(r["stage"], r["step"]) for r in got] == [("sft", 1), ("sft_eval", 1), ("sft", 2), ("sft_eval", 2)]
    assert [(r["stage"], r["step"]) for r in ref] == [(r["stage"], r["step"]) for r in got]  # process 0 alone logs
    for r, g in zip(ref, got):
        if r["stage"] == "sft":
            assert g["tokens"] == r["tokens"]                      # the same global batch
            assert g["loss"] == pytest.approx(r["loss"], abs=1e-5)
            assert g["grad_norm"] == pytest.approx(r["grad_norm"], abs=1e-5)
        else:
            assert g["eval_tokens"] == r["eval_tokens"]
            assert g["eval_loss"] == pytest.approx(r["eval_loss"], abs=1e-5)
            assert g["decision_acc"] == r["decision_acc"]
    assert ref[0]["loss"] != ref[2]["loss"]                      # the steps did train

    data_item = two / "sft" / "checkpoints" / "2" / "data"       # every process saved its iterator position
    assert sorted(p.name for p in data_item.glob("process_*.json")) == ["process_0-of-2.json", "process_1-of-2.json"]
    a, b = _final_params(one, 2), _final_params(two, 2)
    diffs = jax.tree.leaves(jax.tree.map(lambda x, y: float(np.max(np.abs(x - y))), a, b))
    assert max(diffs) <= 1e-5
    start = _final_params(two, 1)
    assert max(jax.tree.leaves(jax.tree.map(lambda x, y: float(np.max(np.abs(x - y))), start, b))) > 1e-4


def test_initialize_passes_both_timeouts_to_jax(monkeypatch):
    seen = {}
    monkeypatch.setattr(jax.distributed, "initialize", lambda **kw: seen.update(kw))
    settings = distributed.DistributedSettings("h:1", 2, 1, initialization_timeout=30, shutdown_timeout=120)
    assert distributed.initialize(settings) is True
    assert seen == {"coordinator_address": "h:1", "num_processes": 2, "process_id": 1,
                    "initialization_timeout": 30, "shutdown_timeout_seconds": 120}
    assert distributed.initialize(None) is False and len(seen) == 5
