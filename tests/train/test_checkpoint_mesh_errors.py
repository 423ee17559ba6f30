"""Checkpoints: restore onto another mesh, retention, clear errors, and no half-written latest step."""
import os
import pathlib
import shutil
import subprocess
import sys
import textwrap

import grain
import jax
import numpy as np
import pytest

from r2rank_jax.mesh import make_mesh
from r2rank_jax.train.checkpoint import CheckpointConfig, Checkpointer, CheckpointError, abstract_like, train_metadata
from r2rank_jax.train.optim import OptimConfig, make_optimizer
from r2rank_jax.train.state import create_train_state
from rl_fixtures import TINY, tiny_models

REPO = pathlib.Path(__file__).resolve().parents[2]


def _state(mesh=None, cfg=TINY, seed=0):
    model, head = tiny_models(seed, cfg)
    tx = make_optimizer(OptimConfig(1e-3, warmup_steps=2, decay_steps=10))
    static, state = create_train_state(model, head, tx, tx, jax.random.PRNGKey(seed), mesh)
    return state, train_metadata(cfg, head, stage="test")


def _iterator():
    return iter(grain.MapDataset.range(64).shuffle(seed=3).batch(4).to_iter_dataset())


def test_unsharded_checkpoint_restores_on_fsdp_meshes_with_equal_values(tmp_path):
    one = make_mesh("data:1", devices=jax.devices()[:1])
    state, meta = _state(one)
    state = state.replace(step=state.step + 5)
    it = _iterator()
    next(it)
    with Checkpointer(CheckpointConfig(str(tmp_path)), meta) as ckpt:
        ckpt.save(5, state, it)
    expected = next(it)
    for spec, devices in (("fsdp:2", jax.devices()[:2]), ("fsdp:8", jax.devices())):
        mesh = make_mesh(spec, devices=devices)
        target, _ = _state(mesh, seed=1)  # other values, the new mesh's shardings
        it2 = _iterator()
        with Checkpointer(CheckpointConfig(str(tmp_path)), meta) as ckpt:
            restored = ckpt.restore(abstract_like(target), data_iter=it2)
        np.testing.assert_array_equal(next(it2), expected)
        for a, b, t in zip(jax.tree.leaves(state), jax.tree.leaves(restored), jax.tree.leaves(target)):
            assert b.sharding == t.sharding, spec
            np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
        embed = restored.llm["embed"][...]
        assert len(embed.sharding.device_set) == len(devices) and embed.addressable_shards[0].data.shape[1] == 32 // len(devices)


def test_keeps_last_n_plus_best(tmp_path):
    state, meta = _state()
    cfg = CheckpointConfig(str(tmp_path), keep_last=2, best_metric="eval_loss", best_mode="min")
    with Checkpointer(cfg, meta) as ckpt:
        for step in range(1, 7):
            ckpt.save(step, state, metrics={"eval_loss": 5.0 - (step == 2) * 3} if step in (2, 4) else None)
        ckpt.wait()
        assert ckpt.all_steps() == [2, 5, 6] and ckpt.best_step() == 2 and ckpt.latest_step() == 6


def test_mismatch_missing_and_corrupt_checkpoints_raise_clear_errors(tmp_path):
    state, meta = _state()
    with Checkpointer(CheckpointConfig(str(tmp_path / "empty")), meta) as ckpt:
        with pytest.raises(CheckpointError, match="no finished checkpoint"):
            ckpt.restore(abstract_like(state))
    with Checkpointer(CheckpointConfig(str(tmp_path / "c")), meta) as ckpt:
        ckpt.save(1, state)
        ckpt.save(2, state)
    bigger = TINY.replace(hidden_size=48)
    other, other_meta = _state(cfg=bigger)
    with Checkpointer(CheckpointConfig(str(tmp_path / "c")), other_meta) as ckpt:  # config differs
        with pytest.raises(CheckpointError, match=r"model_config.hidden_size: checkpoint 32, current 48"):
            ckpt.restore(abstract_like(other))
    with Checkpointer(CheckpointConfig(str(tmp_path / "c")), meta) as ckpt:  # same config, wrong shapes
        with pytest.raises(CheckpointError, match=r"params/llm/embed: checkpoint has \(40, 32\) float32, model expects \(40, 48\)"):
            ckpt.restore(abstract_like(other))
    shutil.rmtree(tmp_path / "c" / "2" / "train")
    with Checkpointer(CheckpointConfig(str(tmp_path / "c")), meta) as ckpt:
        with pytest.raises(CheckpointError, match=r"2: missing checkpoint item\(s\) \['train'\]"):
            ckpt.restore(abstract_like(state))
        for f in (tmp_path / "c" / "1" / "params").rglob("*"):
            if f.is_file() and f.parent.name == "d":
                f.write_bytes(b"garbage")
        with pytest.raises(CheckpointError, match=r"c/1: (cannot restore|unreadable item metadata)"):
            ckpt.restore(abstract_like(state), step=1)


class _ExplodingIterator:
    """Looks like a grain iterator; its state cannot be read (a failure in the middle of a save)."""

    def get_state(self):
        raise RuntimeError("disk full")


def test_failed_save_never_becomes_latest(tmp_path):
    state, meta = _state()
    with Checkpointer(CheckpointConfig(str(tmp_path), async_save=False), meta) as ckpt:
        ckpt.save(1, state)
        with pytest.raises(Exception, match="disk full"):
            ckpt.save(2, state, _ExplodingIterator())
    with Checkpointer(CheckpointConfig(str(tmp_path)), meta) as ckpt:
        assert ckpt.latest_step() == 1
        ckpt.restore(abstract_like(state))
    # A process killed (SIGKILL) while writing step 2: only step 1 is a checkpoint afterwards.
    killed = tmp_path / "killed"
    script = textwrap.dedent(f"""
        import os, signal, sys
        sys.path.insert(0, {str(REPO / "tests" / "train")!r})
        import jax
        from test_checkpoint_mesh_errors import _state
        from r2rank_jax.train.checkpoint import CheckpointConfig, Checkpointer
        class Kill:
            def get_state(self):
                os.kill(os.getpid(), signal.SIGKILL)
        state, meta = _state()
        ckpt = Checkpointer(CheckpointConfig({str(killed)!r}), meta)
        ckpt.save(1, state); ckpt.wait()
        ckpt.save(2, state, Kill())
    """)
    env = dict(os.environ, PYTHONPATH=str(REPO))
    proc = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == -9, proc.stderr[-2000:]
    assert any(".orbax-checkpoint-tmp" in p.name for p in killed.iterdir()), list(killed.iterdir())
    with Checkpointer(CheckpointConfig(str(killed)), meta) as ckpt:
        assert ckpt.latest_step() == 1
        ckpt.restore(abstract_like(state))
    assert not any("tmp" in p.name for p in killed.iterdir())  # cleaned up when reopened


def test_params_digest_follows_the_parameters_only(tmp_path):
    """Equal parameters, equal digests: whatever the step, directory, mesh or optimizer state; one value
    moved by one ulp, another digest."""
    state, meta = _state()
    digests = {}

    def digest(name, st, step=5, mesh=None):
        if mesh is not None:
            target, _ = _state(mesh, seed=1)
            st = jax.tree.map(lambda x, t: jax.device_put(x, t.sharding), st, target)
        with Checkpointer(CheckpointConfig(str(tmp_path / name)), meta) as ckpt:
            ckpt.save(step, st)
            ckpt.wait()
            digests[name] = ckpt.params_digest()
        return digests[name]

    base = digest("base", state)
    assert len(base) == 64 and base == digest("other_step_and_dir", state, step=9)
    assert base == digest("fsdp8", state, mesh=make_mesh("fsdp:8", devices=jax.devices()))
    opt_moved = state.replace(llm_opt=jax.tree.map(lambda x: x + 1 if np.issubdtype(x.dtype, np.floating) else x,
                                                   state.llm_opt), step=state.step + 3)
    assert base == digest("other_optimizer_state", opt_moved)
    b1 = state.head["b1"][...]
    nudged = np.asarray(b1).copy()
    nudged[0] = np.nextafter(nudged[0], np.float32(np.inf))
    head = jax.tree.map(lambda x: x, state.head)
    head["b1"] = head["b1"].replace(jax.numpy.asarray(nudged))
    assert base != digest("one_ulp", state.replace(head=head))
