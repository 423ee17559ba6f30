"""The study runner (r2rank_jax.study): its plan for configs/study_games.py, the config hashes, no_cot's
start from r2rank's SFT, and on configs/debug_cpu.py a study stopped by SIGTERM in R2Rank's RL stage that
`--resume` continues (finished methods and stages skipped, RL from its checkpoint), then one table on the
same users, a finished study skipped, a changed config refused, and `--rerun_changed`."""
import contextlib
import io
import json
import os
import pathlib
import shutil
import signal
import subprocess
import sys
import time

import pytest

from r2rank_jax import runner, study, study_archive
from r2rank_jax.data.benchmark import load_split
from r2rank_jax.eval.score_files import read_score_file
from r2rank_jax.eval.significance import wilcoxon_p

ROOT = pathlib.Path(__file__).resolve().parents[2]
DEBUG = str(ROOT / "configs" / "debug_cpu.py")
GAMES = str(ROOT / "configs" / "study_games.py")
# A small R2Rank on the debug world: 2 SFT steps; RL without validation rollouts, a checkpoint every 5 steps (after
# its compiles an RL step takes ~0.2 s, so the 25 steps after the first checkpoint leave time to stop it mid-RL);
# 6 test users.
RL_STEPS = 30
SMALL = ["--protocols=uniform", "--trained_protocols=uniform", "--config.sft.steps=2", f"--config.rl.steps={RL_STEPS}",
         "--config.rl.checkpoint_every=5", "--config.rl.eval_every=0", "--config.eval.max_users=6"]
ONLY = "--only=popularity,r2rank"


def _in_process(capsys, workdir, *args) -> tuple[int, str, str]:
    """study.main in this process (no interpreter start): (exit status, stdout, stderr)."""
    try:
        rc = study.main([f"--config={DEBUG}", f"--workdir={workdir}", *args])
    except SystemExit as e:
        rc = e.code
    out, err = capsys.readouterr()
    return rc, out, err


def _study(workdir, *args, check=True):
    proc = subprocess.run([sys.executable, "-m", "r2rank_jax.study", f"--config={DEBUG}", f"--workdir={workdir}", *args],
                          cwd=ROOT, capture_output=True, text=True, timeout=600)
    if check:
        assert proc.returncode == 0, proc.stderr[-3000:]
    return proc


def _last_json(stdout: str) -> dict:
    return json.loads(stdout.strip().splitlines()[-1])


def _dry_run(capsys, *args) -> tuple[list[str], dict]:
    assert study.main(list(args) + ["--dry_run"]) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    return lines[:-1], json.loads(lines[-1])


def test_games_plan_covers_every_method_on_the_main_protocol(tmp_path, capsys):
    lines, last = _dry_run(capsys, f"--config={GAMES}", f"--workdir={tmp_path}")
    units = list(last["units"])
    trained = ["tallrec", "prompt4nr", "r2ec", "r2rec", "r2rank", "rl_only", "mlp_only", "no_cot", "analyses",
               "r2rank_long_sft"]
    untrained = ["prepare", "random", "popularity", "sasrec", "bert4rec", "lightgcn", "zero_shot"]
    assert units == [f"popularity/{m}" for m in untrained + trained] + [f"uniform/{m}" for m in untrained]
    assert set(last["units"].values()) == {"todo"} and not (tmp_path / "study.json").exists()
    commands = [line for line in lines if line.startswith("python -m")]
    assert commands[0].endswith(f"--config.data.negatives=popularity --workdir={tmp_path}/popularity/prepare prepare")
    # The listwise baseline is scored once per protocol, in the zero-shot run; no command resumes in a fresh study.
    listwise = [c for c in commands if "--config.eval.listwise=true" in c]
    assert [c.split("--workdir=")[1] for c in listwise] == [f"{tmp_path}/{p}/zero_shot eval" for p in ("popularity", "uniform")]
    assert all("--config.eval.listwise=false" in c for c in commands if "r2rank_jax.launch" in c and " prepare" not in c
               and c not in listwise) and not any("--resume" in c for c in commands)
    no_cot = [c for c in commands if "/popularity/no_cot " in c]
    assert [c.rsplit(" ", 1)[1] for c in no_cot] == ["rl", "eval"] and "--config.rl.prompt_variant=no_cot" in no_cot[0]
    assert any(line.startswith("# popularity/no_cot: to run") and "r2rank's teacher/ and sft/ (copied)" in line
               for line in lines)
    rl_only = [c.rsplit(" ", 1)[1] for c in commands if "/popularity/rl_only " in c]
    assert rl_only == ["rl", "eval"]          # sft.steps=0: R2Rank's synthesize and sft would only skip
    assert [c.rsplit(" ", 1)[1] for c in commands if f"--workdir={tmp_path}/popularity/r2rank " in c] == ["synthesize", "sft", "rl", "eval"]
    assert any(c.startswith("python -m r2rank_jax.baselines.sasrec --benchmark " f"{tmp_path}/popularity/prepare/data/benchmark")
               for c in commands)
    long_sft = [c for c in commands if f"--workdir={tmp_path}/popularity/r2rank_long_sft " in c]    # the extra: R2Rank, 10x SFT
    assert [c.rsplit(" ", 1)[1] for c in long_sft] == ["synthesize", "sft", "rl", "eval"]
    assert all("--config.sft.steps=600" in c for c in long_sft)


def test_games_config_is_the_protocol(tmp_path):
    units = study.plan(GAMES, [], tmp_path, ["popularity", "uniform"], ["popularity"])
    r2rank = next(u for u in units if u.key == "popularity/r2rank")
    cfg = r2rank.config["config"]
    assert cfg["model"]["kind"] == "smollm2" and cfg["model"]["preset"] == "smollm2-135m-instruct"
    d = cfg["data"]
    assert (d["split"], d["num_candidates"], d["negatives"]) == ("user", 20, "popularity")
    assert cfg["eval"]["split"] == "test" and cfg["eval"]["max_users"] >= 500
    source = d["source"].removeprefix("recbole:")
    assert source == "../shared/data/amazon18_video_games/Games-6k"       # relative to the repository root
    uniform = next(u for u in units if u.key == "uniform/prepare")
    assert uniform.config["data"]["negatives"] == "uniform"
    assert {u.max_users for u in units if u.name != "analyses"} == {500} and {u.split for u in units} == {"test"}
    assert next(u for u in units if u.name == "analyses").max_users == study.ANALYSIS_USERS


def test_the_committed_archive_is_current_for_the_study_config(tmp_path):
    """docs/study/archive (the study's finished units, committed as they finish): every archived unit is what
    configs/study_games.py plans now, with its files there, so `--import_from docs/study/archive` imports it
    instead of running it again (a partial unit's journals: continues it). A config change that invalidates
    archived results fails here."""
    archive = ROOT / "docs" / "study" / "archive"
    saved = json.loads((archive / "study.json").read_text())
    entries = saved["units"]
    units = {u.key: u for u in study.plan(GAMES, [], tmp_path, list(study.PROTOCOLS), [study.MAIN_PROTOCOL])}
    for key, partial in saved.get("partial", {}).items():          # a running unit's eval journals
        assert key not in entries and study.partial_importable(units[key], partial, partial["content_hash"]), key
        assert partial["content_hash"] == entries[f"{key.split('/')[0]}/prepare"]["content_hash"], key
        for name in partial["files"]:
            assert (archive / key / name).is_file(), f"{key}: {name}"
    assert {"popularity/prepare", "popularity/sasrec", "uniform/lightgcn"} <= set(entries)
    for key, entry in entries.items():
        assert entry["status"] == "finished" and study.is_current(units[key], entry), key
        for name in entry["archived"]["files"]:
            assert (archive / key / name).is_file(), f"{key}: {name}"
        if units[key].method is not None:
            assert study.importable(units[key], entry, entry["content_hash"]) is None


def test_a_method_hash_covers_what_it_reads(tmp_path):
    def hashes(*extra):
        return {u.key: u.hash for u in study.plan(GAMES, list(extra), tmp_path, ["popularity"], ["popularity"])}

    base = hashes()
    tallrec = hashes("--config.tallrec.steps=7")
    assert {k for k in base if base[k] != tallrec[k]} == {"popularity/tallrec"}
    rl = hashes("--config.rl.steps=3")
    assert {k.split("/")[1] for k in base if base[k] != rl[k]} == {"r2rank", "rl_only", "mlp_only", "no_cot", "r2rec",
                                                                    "analyses",   # the analyses read r2rank's run
                                                                    "r2rank_long_sft"}
    sasrec = hashes("--config.eval.baseline_args=sasrec --epochs 2")
    assert {k for k in base if base[k] != sasrec[k]} == {"popularity/sasrec"}
    data = hashes("--config.data.history_len=8")
    assert all(base[k] != data[k] for k in base)         # a new benchmark: every unit


def test_a_field_added_at_its_default_leaves_a_finished_unit_current(tmp_path):
    def tallrec(*extra):
        (unit,) = [u for u in study.plan(GAMES, list(extra), tmp_path, ["popularity"], ["popularity"], ["tallrec"])
                   if u.name == "tallrec"]
        return unit

    unit = tallrec()
    recorded = json.loads(json.dumps(unit.config))
    del recorded["config"]["data"]["prompt_variant"]          # as if the field were added after the run started
    entry = {"hash": "recorded before the field existed", "config": recorded}
    assert study.is_current(unit, entry)
    other = tallrec("--config.data.prompt_variant=no_cot")
    assert not study.is_current(other, entry) and study.changed_fields(recorded, other.config) == ["config.data.prompt_variant"]
    recorded["config"]["tallrec"]["steps"] += 1
    assert study.changed_fields(recorded, unit.config) == ["config.tallrec.steps"]


def test_bad_arguments_are_refused(tmp_path, capsys):
    common = [f"--config={DEBUG}", f"--workdir={tmp_path}", "--dry_run"]
    with pytest.raises(SystemExit):
        study.main(common + ["--config.data.split=loo"])     # the synthetic world has a user split only
    assert "protocol 'popularity': data.split='loo'" in capsys.readouterr().err
    for bad in (["--only=nope"], ["--protocols=uniform,uniform"], ["--protocols=zipf"], ["--oops"],
                ["--protocols=uniform", "--only=r2rank"]):       # r2rank trains on --trained_protocols=popularity
        with pytest.raises(SystemExit):
            study.main(common + bad)
    lines, last = _dry_run(capsys, *common, "--protocols=uniform", "--trained_protocols=uniform", "--only=no_cot")
    assert list(last["units"]) == ["uniform/prepare", "uniform/r2rank", "uniform/no_cot"]


def test_tokens_are_counted_from_the_logged_windows(tmp_path):
    metrics = tmp_path / "metrics.jsonl"
    before = [{"stage": "rl", "step": 4, "tokens_per_s": 10.0, "steps_per_s": 1.0}]
    metrics.write_text("".join(json.dumps(r) + "\n" for r in before))
    offset = metrics.stat().st_size
    after = [{"stage": "rl", "step": 6, "tokens_per_s": 30.0, "steps_per_s": 0.5},      # 60 tokens/step, 2 steps
             {"stage": "rl_eval", "step": 6, "valid_ndcg@10": 0.1},
             {"stage": "rl", "step": 7, "tokens_per_s": 5.0, "steps_per_s": 1.0},       # 5 tokens, 1 step
             {"stage": "sft", "step": 2, "tokens_per_s": 100.0, "steps_per_s": 2.0}]
    with open(metrics, "a") as f:
        f.write("".join(json.dumps(r) + "\n" for r in after))
    assert study._tokens(metrics, offset) == {"rl": 125, "sft": 100}


def test_no_cot_starts_from_a_copy_of_r2ranks_sft(tmp_path):
    (no_cot,) = [u for u in study.plan(DEBUG, [], tmp_path, ["uniform"], ["uniform"], ["no_cot"])
                 if u.name == "no_cot"]
    r2rank = tmp_path / "uniform" / "r2rank"
    assert no_cot.run.copy_from == r2rank and no_cot.run.stages == ("rl", "eval")
    with pytest.raises(FileNotFoundError, match=r"lacks \['teacher', 'sft'\]"):
        runner.start_from(no_cot.run)
    for part, name in (("teacher", "corpus.jsonl"), ("sft/checkpoints/2", "params"), ("rl", "x")):
        (r2rank / part).mkdir(parents=True)
        (r2rank / part / name).write_text(part)
    (r2rank / "config.json").write_text("{}")
    study._link_data(no_cot, tmp_path)
    runner.start_from(no_cot.run)
    wd = no_cot.run.workdir
    assert (wd / "sft" / "checkpoints" / "2" / "params").read_text() == "sft/checkpoints/2"
    assert (wd / "teacher" / "corpus.jsonl").is_file() and not (wd / "rl").exists() and (wd / "config.json").is_file()
    assert os.readlink(wd / "data") == "../prepare/data"
    (r2rank / "sft" / "checkpoints" / "2" / "params").write_text("changed")
    runner.start_from(no_cot.run)                                  # once: an existing sft/ is kept
    assert (wd / "sft" / "checkpoints" / "2" / "params").read_text() == "sft/checkpoints/2"


@pytest.fixture(scope="module")
def resumed(tmp_path_factory):
    """A study of popularity and r2rank stopped by SIGTERM once R2Rank's RL has a checkpoint, then continued
    with --resume: (workdir, the first run's stdout, study.json then, the RL steps logged then, the refusal
    without --resume, the resumed run's process)."""
    workdir = tmp_path_factory.mktemp("study")
    proc = subprocess.Popen([sys.executable, "-m", "r2rank_jax.study", f"--config={DEBUG}", f"--workdir={workdir}",
                             ONLY, *SMALL], cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    checkpoint = workdir / "uniform" / "r2rank" / "rl" / "checkpoints" / "5"
    deadline = time.time() + 400
    while not checkpoint.is_dir() and proc.poll() is None and time.time() < deadline:
        time.sleep(0.1)
    assert proc.poll() is None, proc.communicate()[1][-3000:]
    assert checkpoint.is_dir(), "no RL checkpoint after 400 s"
    os.kill(proc.pid, signal.SIGTERM)
    first_out, first_err = proc.communicate(timeout=300)
    assert proc.returncode == 0, first_err[-3000:]
    state = json.loads((workdir / "study.json").read_text())
    first_rl = [json.loads(line)["step"] for line in (workdir / "uniform" / "r2rank" / "metrics.jsonl").read_text().splitlines()
                if json.loads(line)["stage"] == "rl"]
    refused = io.StringIO()
    with contextlib.redirect_stderr(refused), pytest.raises(SystemExit):   # continued only with --resume
        study.main([f"--config={DEBUG}", f"--workdir={workdir}", ONLY, *SMALL])
    second = _study(workdir, ONLY, *SMALL, "--resume")
    return workdir, first_out, state, first_rl, refused, second


def test_sigterm_then_resume_continues_and_skips_finished_methods(resumed):
    workdir, first_out, state, first_rl, refused, second = resumed
    assert _last_json(first_out)["stopped"] is True and "# stopped by SIGTERM" in first_out
    units = state["units"]
    assert units["uniform/popularity"]["status"] == "finished" and units["uniform/prepare"]["status"] == "finished"
    r2rank = units["uniform/r2rank"]
    assert r2rank["status"] == "running"
    assert r2rank["stages"]["synthesize"]["finished"] and r2rank["stages"]["sft"]["finished"]
    assert r2rank["stages"]["rl"]["finished"] is False and r2rank["stages"]["rl"]["attempts"] == 1
    assert first_rl and max(first_rl) < RL_STEPS                        # stopped mid-RL

    assert "add --resume to continue it" in refused.getvalue()
    out = second.stdout
    assert "# uniform/prepare: done, skipped" in out and "# uniform/popularity: done, skipped" in out
    assert "# uniform/r2rank: stage synthesize finished" in out and "# uniform/r2rank: stage sft finished" in out
    launched = [line for line in out.splitlines() if line.startswith("python -m ")]
    assert [line.split("--workdir=")[1] for line in launched] == [f"{workdir}/uniform/r2rank --resume rl",
                                                                 f"{workdir}/uniform/r2rank eval"]
    assert "resume: restored step" in second.stderr                     # RL continued from its checkpoint
    rl = [json.loads(line)["step"] for line in (workdir / "uniform" / "r2rank" / "metrics.jsonl").read_text().splitlines()
          if json.loads(line)["stage"] == "rl"]
    assert rl[:len(first_rl)] == first_rl and rl == sorted(set(rl)) and rl[-1] == RL_STEPS
    last = _last_json(out)
    assert last["stopped"] is False and last["ran"] == ["uniform/r2rank"]
    assert last["skipped"] == ["uniform/prepare", "uniform/popularity"]
    final = json.loads((workdir / "study.json").read_text())["units"]
    assert all(u["status"] == "finished" for u in final.values())
    assert final["uniform/r2rank"]["stages"]["rl"]["attempts"] == 2 and final["uniform/r2rank"]["stages"]["sft"]["attempts"] == 1
    assert os.readlink(workdir / "uniform" / "r2rank" / "data") == "../prepare/data"     # the one prepared benchmark
    # Only the zero-shot run scores the listwise baseline; each run scored its own rows only.
    r2rank_results = json.loads((workdir / "uniform" / "r2rank" / "eval" / "results.json").read_text())
    assert set(r2rank_results["methods"]) == {"r2rank", "sft_only"}


def test_results_join_every_method_on_the_same_users(resumed):
    workdir = resumed[0]
    results = json.loads((workdir / "results.json").read_text())
    assert results["main_protocol"] == "popularity" and list(results["protocols"]) == ["uniform"]
    table = results["protocols"]["uniform"]
    assert list(table["methods"]) == ["popularity", "r2rank", "sft_only"]
    assert table["significance"]["reference"] == "r2rank"
    records = load_split(workdir / "uniform" / "prepare" / "data" / "benchmark", "test")[:6]
    assert table["users"] == [r.user_id for r in records] and table["num_users"] == 6
    files = {"popularity": "popularity/eval/scores/popularity", "r2rank": "r2rank/eval/scores/r2rank",
             "sft_only": "r2rank/eval/scores/sft_only"}
    for row, stem in files.items():
        score_file = read_score_file(workdir / "uniform" / f"{stem}.jsonl")
        assert list(score_file.user_ids) == table["users"], row
        assert [list(c) for c in score_file.candidates] == [list(r.candidates) for r in records], row
        assert table["methods"][row]["ndcg@10"] == pytest.approx(
            sum(json.loads(line)["ndcg@10"] for line in (workdir / "uniform" / f"{stem}.jsonl").read_text().splitlines()) / 6)
    assert "answer_tag_rate" in table["methods"]["sft_only"]             # carried over from the run's results
    assert table["protocol"]["options"]["negatives"] == "uniform" and table["protocol"]["options"]["num_candidates"] == 20
    cost = table["cost"]
    assert set(cost) == {"prepare", "popularity", "r2rank"}
    assert set(cost["r2rank"]["stages"]) == {"synthesize", "sft", "rl", "eval"}
    assert cost["r2rank"]["cpu_s"] > cost["popularity"]["cpu_s"] > 0 and cost["r2rank"]["peak_rss_gib"] > 0.1
    assert cost["r2rank"]["generated_tokens"] > 0 and cost["popularity"]["generated_tokens"] is None
    md = (workdir / "results.md").read_text()
    assert "## Protocol `uniform`: negatives drawn uniformly" in md and "K = 20 candidates" in md
    assert "the same 6 test users" in md and "| r2rank (ref) |" in md and "### Cost" in md
    max_new = json.loads((workdir / "uniform" / "r2rank" / "config.json").read_text())["eval"]["max_new_tokens"]
    assert table["protocol"]["rationale_max_new_tokens"] == max_new and f"R2Rank's rationales ≤ {max_new} new tokens" in md
    # Training curves of the trained method only (the classic baseline logs none), linked from results.md.
    assert table["curves"] == {"r2rank": "curves/uniform/r2rank.png"}
    assert (workdir / "curves" / "uniform" / "r2rank.png").read_bytes().startswith(b"\x89PNG")
    assert "![r2rank](curves/uniform/r2rank.png)" in md
    # The paper's orderings: the one whose rows are both here is tested, the others wait for their rows.
    claims = {o["claim"]: o for o in table["orderings"]}
    rl_gain = claims["SFT&RL > SFT-only (RL adds to the warm start)"]
    assert rl_gain["p_value"] == pytest.approx(wilcoxon_p(*(
        [json.loads(line)["ndcg@10"] for line in (workdir / "uniform" / f"{files[row]}.jsonl").read_text().splitlines()]
        for row in ("r2rank", "sft_only"))))
    assert rl_gain["verdict"] in {"holds", "reversed", "not significant"}
    assert claims["R2Rank > TALLRec (Table 2)"]["verdict"] == "pending"
    assert claims["r2rank's scores unchanged when the positive moves; zero_shot_listwise's change"]["verdict"] == "pending"
    assert "### The paper's orderings" in md and "| SFT&RL > SFT-only (RL adds to the warm start) | r2rank " in md


def test_finished_units_of_another_study_are_imported_not_run(resumed, tmp_path):
    """--import_from: a second study (another machine, another core) joins its finished units: copied in with
    their scores and cost, nothing launched for them, the same table; only this study's own prepare runs."""
    source = resumed[0]
    here = tmp_path / "here"
    out = _study(here, ONLY, *SMALL, f"--import_from={source}").stdout
    assert f"# uniform/popularity: imported from {source}" in out and f"# uniform/r2rank: imported from {source}" in out
    launched = [line for line in out.splitlines() if line.startswith("python -m ")]
    assert [line.rsplit(" ", 1)[1] for line in launched] == ["prepare"]
    last = _last_json(out)
    assert last["imported"] == ["uniform/popularity", "uniform/r2rank"] and last["ran"] == ["uniform/prepare"]
    ours = json.loads((here / "results.json").read_text())["protocols"]["uniform"]
    theirs = json.loads((source / "results.json").read_text())["protocols"]["uniform"]
    assert ours["methods"] == theirs["methods"] and ours["users"] == theirs["users"]
    assert ours["cost"]["r2rank"] == theirs["cost"]["r2rank"]
    assert os.readlink(here / "uniform" / "r2rank" / "data") == "../prepare/data"      # this study's benchmark
    entry = json.loads((here / "study.json").read_text())["units"]["uniform/r2rank"]
    assert entry["workdir"] == str(here / "uniform" / "r2rank") and entry["status"] == "finished"

    # What is not imported, and why.
    overrides = [a for a in SMALL if a.startswith("--config.")]
    plan = lambda *extra: {u.key: u for u in study.plan(DEBUG, overrides + list(extra), here, ["uniform"], ["uniform"],  # noqa: E731
                                                        ["popularity", "r2rank"])}
    units, state = plan(), json.loads((source / "study.json").read_text())["units"]
    theirs, content = state["uniform/r2rank"], state["uniform/r2rank"]["content_hash"]
    assert study.importable(units["uniform/r2rank"], theirs, content) is None
    assert study.importable(units["uniform/r2rank"], None, content) == "not in that study"
    assert study.importable(units["uniform/r2rank"], {**theirs, "status": "running"}, content) == "not finished there"
    assert "another benchmark" in study.importable(units["uniform/r2rank"], theirs, "f" * 64)
    assert study.importable(plan("--config.rl.steps=31")["uniform/r2rank"], theirs, content) == \
        "finished there with another config"
    assert "prepare" in study.importable(units["uniform/prepare"], state["uniform/prepare"], content)


def test_an_archive_keeps_the_scores_not_the_checkpoints_and_is_imported(resumed, tmp_path, capsys):
    """study_archive: each finished unit's score files, run results and curves (no checkpoint, corpus, rationale
    or config), byte for byte; a fresh study that imports the archive has the source's table, user by user;
    no_cot then refuses to start from the archived r2rank (no SFT checkpoint there)."""
    source = resumed[0]
    arc = tmp_path / "archive"
    assert study_archive.main([f"--workdir={source}", f"--out={arc}"]) == 0
    last = _last_json(capsys.readouterr().out)
    assert last["archived"] == ["uniform/popularity", "uniform/r2rank"] and last["skipped"] == {}
    files = sorted(str(p.relative_to(arc)) for p in arc.rglob("*") if p.is_file())
    assert files == ["study.json", "uniform/popularity/eval/scores/popularity.jsonl", "uniform/r2rank/eval/results.json",
                     "uniform/r2rank/eval/scores/r2rank.jsonl", "uniform/r2rank/eval/scores/sft_only.jsonl",
                     "uniform/r2rank/metrics.jsonl"]
    for f in files[1:]:
        assert (arc / f).read_bytes() == (source / f).read_bytes()
    assert last["bytes"] == sum((arc / f).stat().st_size for f in files[1:])
    entries = json.loads((arc / "study.json").read_text())["units"]
    assert entries["uniform/prepare"]["archived"]["files"] == [] and not (arc / "uniform" / "prepare").exists()
    assert entries["uniform/r2rank"]["archived"]["from"] == str(source / "uniform" / "r2rank")

    # Archiving one method again keeps the others.
    assert study_archive.main([f"--workdir={source}", f"--out={arc}", "--only=popularity"]) == 0
    assert _last_json(capsys.readouterr().out)["archived"] == ["uniform/popularity"]
    assert "uniform/r2rank" in json.loads((arc / "study.json").read_text())["units"]

    here = tmp_path / "here"
    out = _study(here, ONLY, *SMALL, f"--import_from={arc}").stdout
    assert _last_json(out)["imported"] == ["uniform/popularity", "uniform/r2rank"]
    ours = json.loads((here / "results.json").read_text())["protocols"]["uniform"]
    theirs = json.loads((source / "results.json").read_text())["protocols"]["uniform"]
    assert ours["methods"] == theirs["methods"] and ours["significance"] == theirs["significance"]
    assert ours["curves"] == theirs["curves"]
    assert {k: v for k, v in ours["cost"].items() if k != "prepare"} == \
        {k: v for k, v in theirs["cost"].items() if k != "prepare"}      # the benchmark is prepared again here

    with pytest.raises(RuntimeError, match="r2rank was imported from an archive"):
        study.main([f"--config={DEBUG}", f"--workdir={here}", "--only=no_cot", *SMALL, "--resume"])
    assert not (here / "uniform" / "no_cot" / "sft").exists()
    with pytest.raises(SystemExit):
        study_archive.main([f"--workdir={tmp_path / 'none'}", f"--out={arc}"])
    assert "no study there" in capsys.readouterr().err


class _Killed(Exception):
    pass


def test_a_unit_archived_mid_eval_continues_from_its_journals_on_a_fresh_machine(resumed, tmp_path, capsys,
                                                                                    monkeypatch):
    """A study stopped in R2Rank's eval is archived with its score journal (partial); a fresh study importing
    the archive retrains SFT and RL bit for bit (the journal's fingerprint holds their parameter digests),
    so its eval replays the archived batch (scores altered in the archive, to see them come back) and
    scores the rest as the source did."""
    from r2rank_jax import launch
    from r2rank_jax.eval import journal

    source = tmp_path / "source"
    shutil.copytree(resumed[0], source, symlinks=True)
    state = json.loads((source / "study.json").read_text())
    r2rank = state["units"]["uniform/r2rank"]
    r2rank.update(status="running", workdir=str(source / "uniform" / "r2rank"))
    r2rank["stages"]["eval"]["finished"] = False
    r2rank.pop("finished")
    for key, entry in state["units"].items():
        entry["workdir"] = str(source / key)
    (source / "study.json").write_text(json.dumps(state))
    extra = [a for a in SMALL if a.startswith("--config.")]
    unit = next(u for u in study.plan(DEBUG, extra, source, ["uniform"], ["uniform"], ["r2rank"])
                if u.key == "uniform/r2rank")
    put = journal.Section.put

    def put_then_kill(self, batch, users, payload):
        put(self, batch, users, payload)
        raise _Killed

    monkeypatch.setattr(journal.Section, "put", put_then_kill)
    with pytest.raises(_Killed):                                      # killed after its first scored batch
        launch.main(runner.launch_argv(unit.run, DEBUG, extra, "eval", resume=False))
    monkeypatch.undo()

    arc = tmp_path / "archive"
    assert study_archive.main([f"--workdir={source}", f"--out={arc}"]) == 0
    last = _last_json(capsys.readouterr().out)
    assert last["archived"] == ["uniform/popularity"] and last["partial"] == ["uniform/r2rank"]
    archived = json.loads((arc / "study.json").read_text())
    assert "uniform/r2rank" not in archived["units"]
    partial = archived["partial"]["uniform/r2rank"]
    name = "eval/scores/r2rank.journal.jsonl"
    assert partial["files"] == [name] and partial["batches"] == {name: 1} and partial["hash"] == unit.hash
    header, line = (arc / "uniform" / "r2rank" / name).read_text().splitlines()
    batch = json.loads(line)
    batch["payload"]["scores"] = [[7.0 + k for k, _ in enumerate(row)] for row in batch["payload"]["scores"]]
    (arc / "uniform" / "r2rank" / name).write_text(f"{header}\n{json.dumps(batch)}\n")

    here = tmp_path / "here"
    out = _study(here, ONLY, *SMALL, f"--import_from={arc}").stdout
    assert "# uniform/r2rank: 1 journaled eval batches from" in out
    launched = [line.split("--workdir=")[1] for line in out.splitlines() if line.startswith("python -m ")]
    assert launched == [f"{here}/uniform/prepare prepare"] + \
        [f"{here}/uniform/r2rank {stage}" for stage in ("synthesize", "sft", "rl")] + [f"{here}/uniform/r2rank --resume eval"]
    def scores(root):
        sf = read_score_file(root / "uniform" / "r2rank" / "eval" / "scores" / "r2rank.jsonl")
        return dict(zip(sf.user_ids, sf.scores))

    theirs, ours = scores(resumed[0]), scores(here)
    replayed = set(batch["users"])
    assert set(ours) == set(theirs) and replayed < set(ours)
    for user in ours:
        if user in replayed:
            assert list(ours[user]) == [7.0 + k for k in range(len(ours[user]))], user
        else:
            assert list(ours[user]) == list(theirs[user]), user
    for stem in ("sft_only.jsonl", "r2rank.rationales.jsonl"):
        rel = pathlib.Path("uniform", "r2rank", "eval", "scores", stem)
        assert (here / rel).read_bytes() == (resumed[0] / rel).read_bytes(), stem
    final = json.loads((here / "study.json").read_text())["units"]["uniform/r2rank"]
    assert final["status"] == "finished" and final["journals_from"] == str(arc / "uniform" / "r2rank")

    assert study_archive.main([f"--workdir={here}", f"--out={arc}"]) == 0   # finished: replaces the partial
    assert _last_json(capsys.readouterr().out)["archived"] == ["uniform/popularity", "uniform/r2rank"]
    assert "partial" not in json.loads((arc / "study.json").read_text())
    assert not (arc / "uniform" / "r2rank" / name).exists()
    assert not study.partial_importable(unit, {**partial, "hash": "0" * 64}, partial["content_hash"])
    assert not study.partial_importable(unit, partial, "f" * 64)


def test_retrain_archived_trains_the_source_again_for_no_cot_and_the_analyses(resumed, tmp_path, capsys):
    """On a fresh machine that imported r2rank from an archive (scores, no checkpoints), `--retrain_archived`
    trains r2rank again beside it (its training stages, no eval) before no_cot copies its SFT and the analyses
    rescore it; r2rank's rows stay the archived scores, and the analyses say they ran on the retrained model,
    whose NDCG@10 on their users equals the archived run's (bit-for-bit retraining, same code and machine)."""
    source = resumed[0]
    arc = tmp_path / "archive"
    assert study_archive.main([f"--workdir={source}", f"--out={arc}"]) == 0
    capsys.readouterr()
    here = tmp_path / "here"
    _study(here, ONLY, *SMALL, f"--import_from={arc}")
    rc, out, _ = _in_process(capsys, here, "--only=no_cot,analyses", "--analysis_users=3", "--retrain_archived",
                             *SMALL, "--resume")
    assert rc == 0, out[-3000:]
    retrained = here / "uniform" / "r2rank_retrained"
    launched = [line.split("--workdir")[1].split()[0].lstrip("=") for line in out.splitlines()
                if line.startswith("python -m ")]
    assert launched[:3] == [str(retrained)] * 3                     # synthesize, sft, rl; no eval
    assert all(w == str(retrained) for w in launched if "analyses" not in w and "no_cot" not in w)
    assert "--skip_missing_log" in next(line for line in out.splitlines() if "rationale_fidelity" in line)
    assert not (retrained / "eval").exists() and (retrained / "rl" / "checkpoints").is_dir()
    assert _last_json(out)["ran"] == ["uniform/no_cot", "uniform/analyses"]
    for f in (retrained / "sft").rglob("*"):                         # no_cot starts from the retrained SFT
        if f.is_file():
            assert (here / "uniform" / "no_cot" / "sft" / f.relative_to(retrained / "sft")).read_bytes() == f.read_bytes()
    entry = json.loads((here / "study.json").read_text())["units"]["uniform/r2rank"]
    assert entry["archived"] and entry["retrained"]["finished"] and set(entry["retrained"]["stages"]) == {"synthesize", "sft", "rl"}
    table = json.loads((here / "results.json").read_text())["protocols"]["uniform"]
    ours = read_score_file(here / "uniform" / "r2rank" / "eval" / "scores" / "r2rank.jsonl")
    theirs = read_score_file(source / "uniform" / "r2rank" / "eval" / "scores" / "r2rank.jsonl")
    assert ours.scores == theirs.scores                              # the row is the archived run's
    note = table["analyses"]["analyses"]["retrained"]
    assert note["workdir"] == str(retrained) and note["num_users"] == 3
    assert note["retrained_ndcg10"] == pytest.approx(note["archived_ndcg10"], abs=1e-9)
    assert table["analyses"]["analyses"]["position"]["methods"]["r2rank"]["invariant"] is True
    md = (here / "results.md").read_text()
    assert "The analyses below ran on r2rank trained again here (`--retrain_archived`" in md


def test_finished_study_is_skipped_and_a_changed_config_refused(resumed, tmp_path, capsys):
    workdir = tmp_path / "study"
    shutil.copytree(resumed[0], workdir, symlinks=True)
    rc, out, _ = _in_process(capsys, workdir, ONLY, *SMALL, "--resume")
    last = _last_json(out)
    assert rc == 0 and last["ran"] == [] and len(last["skipped"]) == 3
    assert not [line for line in out.splitlines() if line.startswith("python -m ")]

    state = (workdir / "study.json").read_text()
    changed = [a if not a.startswith("--config.rl.steps=") else f"--config.rl.steps={RL_STEPS + 1}" for a in SMALL]
    rc, _, err = _in_process(capsys, workdir, ONLY, *changed, "--resume")
    assert rc == 2
    assert "uniform/r2rank: config" in err and "(changed: config.rl.steps)" in err
    assert "uniform/popularity" not in err and "--rerun_changed" in err
    assert (workdir / "study.json").read_text() == state                # nothing ran

    fewer = [a if not a.startswith("--config.eval.max_users=") else "--config.eval.max_users=5" for a in SMALL]
    rc, out, _ = _in_process(capsys, workdir, "--only=popularity", *fewer, "--resume", "--rerun_changed")
    assert rc == 0 and _last_json(out)["ran"] == ["uniform/popularity"]
    table = json.loads((workdir / "results.json").read_text())["protocols"]["uniform"]
    assert list(table["methods"]) == ["popularity"] and table["num_users"] == 5
    assert table["stale_methods"] == ["r2rank"]          # finished with the 6-user config: left out
    assert len(read_score_file(workdir / "uniform" / "popularity" / "eval" / "scores" / "popularity.jsonl").user_ids) == 5


def test_analyses_of_r2rank_join_the_results(resumed, tmp_path, capsys):
    """`--only analyses` on the finished study: r2rank is skipped, its run rescored with the positive moved
    (R2Rank invariant, scores computed from each candidate's own prompt) and with shuffled histories; both
    analyses join results.json/md; the analyses config is hashed (another user count is a change)."""
    workdir = tmp_path / "study"
    shutil.copytree(resumed[0], workdir, symlinks=True)
    args = ["--only=analyses", "--analysis_users=3", *SMALL, "--resume"]
    rc, out, _ = _in_process(capsys, workdir, *args)
    assert rc == 0 and "# analyses reads r2rank's run: r2rank added" in out
    assert _last_json(out)["ran"] == ["uniform/analyses"] and "uniform/r2rank" in _last_json(out)["skipped"]
    launched = [line for line in out.splitlines() if line.startswith("python -m ")]
    assert [line.split()[2] for line in launched] == ["r2rank_jax.analyses.position", "r2rank_jax.analyses.history_order",
                                                      "r2rank_jax.analyses.rationale_fidelity"]
    table = json.loads((workdir / "results.json").read_text())["protocols"]["uniform"]
    position = table["analyses"]["analyses"]["position"]
    assert position["num_users"] == 3 and position["positions"] == [1, 10, 20]
    assert position["methods"]["r2rank"]["invariant"] is True
    assert set(position["methods"]) == {"r2rank", "zero_shot_listwise"}
    assert table["analyses"]["analyses"]["history_order"]["num_users"] == 3
    assert (workdir / "uniform" / "analyses" / "position.png").is_file()
    md = (workdir / "results.md").read_text()
    assert "### Candidate position sensitivity (3 users)" in md and "| analyses | – |" in md
    claim = table["orderings"][-1]
    assert claim["max_abs_change"] == position["methods"]["r2rank"]["max_abs_change_overall"]
    listwise_moved = not position["methods"]["zero_shot_listwise"]["invariant"]
    assert claim["verdict"] == ("holds" if listwise_moved else "untestable")
    assert "Position claim (r2rank's scores unchanged" in md
    # The debug run's teacher is the scripted one: the fidelity check says it was skipped, and why.
    assert "scripted" in table["analyses"]["analyses"]["rationale_fidelity"]["skipped"]
    assert "Skipped: the run's teacher is 'scripted'" in md
    rc, _, err = _in_process(capsys, workdir, "--only=analyses", "--analysis_users=4", *SMALL, "--resume")
    assert rc == 2 and "uniform/analyses: config" in err and "changed: users" in err


def test_a_run_on_one_protocol_keeps_the_others_table(resumed, tmp_path, capsys):
    """`--protocols popularity` on the finished uniform study: the synthetic world is prepared again with
    popularity-weighted negatives, and results.* cover both protocols (the uniform table as it was)."""
    workdir = tmp_path / "study"
    shutil.copytree(resumed[0], workdir, symlinks=True)
    before = json.loads((workdir / "results.json").read_text())["protocols"]["uniform"]
    args = [a if a != "--protocols=uniform" else "--protocols=popularity" for a in SMALL]
    rc, out, _ = _in_process(capsys, workdir, "--only=popularity", *args, "--resume")
    assert rc == 0 and _last_json(out)["ran"] == ["popularity/prepare", "popularity/popularity"]
    results = json.loads((workdir / "results.json").read_text())
    assert list(results["protocols"]) == ["popularity", "uniform"]
    assert results["protocols"]["uniform"]["methods"] == before["methods"]
    assert list(results["protocols"]["popularity"]["methods"]) == ["popularity"]
    manifest = json.loads((workdir / "popularity" / "prepare" / "data" / "benchmark" / "manifest.json").read_text())
    assert manifest["options"]["negatives"] == "popularity"
    md = (workdir / "results.md").read_text()
    assert "## Protocol `popularity` (main table)" in md and "## Protocol `uniform`:" in md
