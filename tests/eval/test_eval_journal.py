"""Score journals (r2rank_jax.eval.journal): an interrupted eval resumes where it stopped, exactly."""
import json
import math
import shutil

import numpy as np
import pytest

from r2rank_jax import launch
from r2rank_jax.eval import journal
from tests.conftest import REPO_ROOT

DEBUG = REPO_ROOT / "configs" / "debug_cpu.py"


def _write_two_batches(path, fingerprint="fp"):
    with journal.journaling(path, fingerprint, resume=False):
        s = journal.section()
        s.put(0, ["u1", "u2"], {"scores": journal.encode_floats([[1.5, -math.inf]])})
        s.put(1, ["u3"], {"texts": ["3 > 1"]})


def test_a_resumed_journal_replays_each_batch_of_the_same_users_and_section(tmp_path):
    path = tmp_path / "m.journal.jsonl"
    _write_two_batches(path)
    with journal.journaling(path, "fp", resume=True) as j:
        first, second = journal.section(), journal.section()
        assert journal.decode_floats(first.get(0, ["u1", "u2"])["scores"]) == [[1.5, -math.inf]]
        assert first.get(1, ["u3"]) == {"texts": ["3 > 1"]}
        assert first.get(1, ["u4"]) is None            # other users: scored again
        assert first.get(2, ["u5"]) is None            # never journaled
        assert second.get(0, ["u1", "u2"]) is None     # another batch loop's section
        assert j.replayed == 2


@pytest.mark.parametrize("fingerprint, resume", [("other", True), ("fp", False)])
def test_another_fingerprint_or_no_resume_starts_the_journal_again(tmp_path, fingerprint, resume):
    path = tmp_path / "m.journal.jsonl"
    _write_two_batches(path)
    with journal.journaling(path, fingerprint, resume=resume):
        assert journal.section().get(0, ["u1", "u2"]) is None
    assert path.read_text().splitlines() == [json.dumps({"journal": journal.VERSION, "fingerprint": fingerprint})]


def test_a_line_cut_by_a_kill_is_dropped_and_appends_continue_on_their_own_line(tmp_path):
    path = tmp_path / "m.journal.jsonl"
    _write_two_batches(path)
    path.write_text(path.read_text() + '{"section": 0, "batch": 2, "us')
    with journal.journaling(path, "fp", resume=True):
        s = journal.section()
        assert s.get(1, ["u3"]) == {"texts": ["3 > 1"]} and s.get(2, ["u9"]) is None
        s.put(2, ["u9"], {"texts": ["1"]})
    with journal.journaling(path, "fp", resume=True):
        assert journal.section().get(2, ["u9"]) == {"texts": ["1"]}


def test_outside_journaling_nothing_is_kept():
    s = journal.section()
    s.put(0, ["u1"], {"texts": ["x"]})
    assert s.get(0, ["u1"]) is None


class _Killed(Exception):
    pass


@pytest.mark.slow
def test_eval_killed_mid_way_resumes_from_its_journals_to_the_same_files(debug_run, tmp_path, monkeypatch):
    """The debug run's eval (r2rank, sft_only, zero-shot pointwise and listwise; 8 users in batches of 2)
    stopped after 5 journaled batches, then `--resume`: only the rest is scored, and every score file,
    rationale sample and results.json equals the uninterrupted run's."""
    for part in ("data", "teacher", "sft", "rl", "config.json"):
        src = debug_run / part
        (shutil.copytree if src.is_dir() else shutil.copy)(src, tmp_path / part)
    argv = [f"--config={DEBUG}", f"--workdir={tmp_path}", "--config.rl.steps=2"]
    put, puts, kill_after = journal.Section.put, [], [5]

    def put_then_kill(self, batch, users, payload):
        put(self, batch, users, payload)
        puts.append(batch)
        if len(puts) == kill_after[0]:
            raise _Killed

    monkeypatch.setattr(journal.Section, "put", put_then_kill)
    with pytest.raises(_Killed):
        launch.main([*argv, "eval"])
    scores = tmp_path / "eval" / "scores"
    assert sorted(p.name for p in scores.glob("*.journal.jsonl")) == ["r2rank.journal.jsonl", "sft_only.journal.jsonl"]
    assert not (tmp_path / "eval" / "results.json").exists()

    puts.clear()
    kill_after[0] = None
    assert launch.main([*argv, "--resume", "eval"]) == 0
    # Killed: r2rank's 4 batches and sft_only's first were journaled; the resume scores only the rest:
    # sft_only's batches 1-3, zero_shot_pointwise's 0-3 and the listwise baseline's one batch of 8.
    assert puts == [1, 2, 3, 0, 1, 2, 3, 0]
    assert not list(scores.glob("*.journal.jsonl"))                    # removed once results.json exists
    expected = debug_run / "eval" / "scores"
    names = sorted(p.name for p in expected.glob("*.jsonl"))
    assert "sft_only.jsonl" in names and "sft_only.rationales.jsonl" in names
    for name in names:
        assert (scores / name).read_bytes() == (expected / name).read_bytes(), name
    assert (json.loads((tmp_path / "eval" / "results.json").read_text())["methods"]
            == json.loads((debug_run / "eval" / "results.json").read_text())["methods"])


def test_the_fingerprint_follows_the_config_the_method_and_the_checkpoints_content(tmp_path):
    """The journal's fingerprint: the config, the method, and the parameters of the checkpoints the eval
    reads, not their files: a copy (other mtimes: a run retrained bit for bit) keeps it, other
    parameters or another evaluated step change it."""
    import dataclasses

    import jax

    from r2rank_jax.config import load_config_file
    from r2rank_jax.run.workdir import Workdir
    from r2rank_jax.stages.evaluate import _fingerprint
    from r2rank_jax.train.checkpoint import CheckpointConfig, Checkpointer, train_metadata
    from r2rank_jax.train.optim import OptimConfig, make_optimizer
    from r2rank_jax.train.state import create_train_state
    from tests.train.rl_fixtures import TINY, tiny_models

    def save(run_dir, seed, steps):
        model, head = tiny_models(seed, TINY)
        tx = make_optimizer(OptimConfig(1e-3))
        _, state = create_train_state(model, head, tx, tx, jax.random.PRNGKey(seed))
        with Checkpointer(CheckpointConfig(str(run_dir / "checkpoints")), train_metadata(TINY, head)) as ckpt:
            for step in steps:
                ckpt.save(step, state)

    cfg, wd = load_config_file(DEBUG), Workdir(tmp_path / "run")
    before = _fingerprint(cfg, wd, "r2rank")                          # no checkpoint yet
    save(wd.sft, 0, [4])
    save(wd.rl, 1, [2])
    base = _fingerprint(cfg, wd, "r2rank")
    assert base != before
    assert _fingerprint(cfg, wd, "r2rank") == base
    assert _fingerprint(cfg, wd, "sft_only") != base
    assert _fingerprint(dataclasses.replace(cfg, seed=cfg.seed + 1), wd, "r2rank") != base
    copy = Workdir(tmp_path / "copy")
    for part in ("sft", "rl"):
        shutil.copytree(tmp_path / "run" / part, tmp_path / "copy" / part)
    assert _fingerprint(cfg, copy, "r2rank") == base
    shutil.rmtree(wd.rl)
    save(wd.rl, 2, [2])                                                   # retrained to other parameters
    assert _fingerprint(cfg, wd, "r2rank") != base
    shutil.rmtree(copy.rl)
    save(copy.rl, 1, [3])                                                 # the same parameters at another step
    assert _fingerprint(cfg, copy, "r2rank") != base


def test_r2ec_scores_are_journaled_per_batch_and_replayed_by_a_resumed_eval(tmp_path):
    """R²ec's scorer (one greedy generation per user, not `score_batches`) journals each batch of users inside
    the eval's journal; a resumed eval replays them without generating, and outside a journal nothing is kept."""
    from types import SimpleNamespace

    from r2rank_jax.methods.r2ec import score_records

    records = [SimpleNamespace(user_id=f"u{i}") for i in range(5)]

    class Prompts:
        def batch(self, chunk, _, batch_users):
            return [r.user_id for r in chunk] + [None] * (batch_users - len(chunk))

    calls = []

    def scorer(state, batch):
        calls.append([u for u in batch if u is not None])
        return np.array([[state + int(u[1:]), -math.inf] if u else [0.0, 0.0] for u in batch], np.float32)

    want = np.array([[10.0 + i, -math.inf] for i in range(5)], np.float32)
    path = tmp_path / "r2ec.journal.jsonl"
    with journal.journaling(path, "fp", resume=False):
        np.testing.assert_array_equal(score_records(scorer, 10.0, Prompts(), records, 2), want)
    assert calls == [["u0", "u1"], ["u2", "u3"], ["u4"]]
    lines = path.read_text().splitlines()
    assert len(lines) == 4 and [json.loads(line)["users"] for line in lines[1:]] == calls
    path.write_text("\n".join(lines[:3]) + "\n")                 # killed after two batches
    calls.clear()
    with journal.journaling(path, "fp", resume=True) as j:
        np.testing.assert_array_equal(score_records(scorer, 10.0, Prompts(), records, 2), want)
    assert calls == [["u4"]] and j.replayed == 2
    calls.clear()
    np.testing.assert_array_equal(score_records(scorer, 10.0, Prompts(), records, 2), want)   # no journal active
    assert len(calls) == 3
