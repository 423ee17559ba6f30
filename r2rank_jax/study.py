"""The reproducibility study: every method of the paper's tables on one prepared benchmark per candidate
protocol, one resumable command, one results table.

    python -m r2rank_jax.study --config=configs/study_games.py --workdir=W [--only a,b] [--resume]
        [--protocols popularity,uniform] [--trained_protocols popularity] [--rerun_changed] [--dry_run]
        [--import_from W2] [--retrain_archived]
        [--config.F=V ...]

Protocols (`PROTOCOLS`): ``popularity`` (negatives drawn proportionally to train popularity: the main
table, `MAIN_PROTOCOL`) and ``uniform``; each is prepared once (``W/PROTOCOL/prepare``, the launcher's
``prepare``) and every method's workdir ``W/PROTOCOL/METHOD`` links its ``data`` to it, so every method
sees the same users and candidate lists. The classic and zero-shot baselines run on every protocol, the
trained methods on ``--trained_protocols`` (default: the main one).

Methods (`METHODS`, in this order): the classic baselines (``python -m r2rank_jax.baselines.NAME`` on the
prepared benchmark, cut to the evaluated users), ``zero_shot`` (pointwise and listwise), TALLRec,
Prompt4NR, R²ec, R2Rec, ``r2rank`` (SFT+RL; its SFT checkpoint is the SFT-only row), and the ablations
``rl_only``, ``mlp_only`` and ``no_cot`` (`r2rank_jax.ablations`; ``no_cot`` starts from a copy of
r2rank's teacher/ and sft/), then ``analyses`` (``python -m r2rank_jax.analyses.{position,history_order,rationale_fidelity}``
on r2rank's run, written to ``W/PROTOCOL/analyses``). A launcher method runs each of its stages as its own
``python -m r2rank_jax.launch ... STAGE`` process (`r2rank_jax.runner`); only the zero-shot run scores the
listwise baseline (``eval.listwise=false`` elsewhere), and each run scores only its own rows.

State: ``W/study.json`` records every unit (a protocol's prepare, or one method on one protocol) with the
hash of the config it reads (`config_hash`: the resolved config's sections that method reads) and, per
stage, whether it finished and what it cost (wall and CPU seconds of the child process, peak RSS,
the tokens the stage reported). A finished unit is skipped; an interrupted one continues where it
stopped (finished stages are skipped, training stages resume from their checkpoints, ``--resume``); a
unit whose config changed since it started is refused unless ``--rerun_changed`` (its workdir is then
removed and it runs again). A workdir that holds a study needs ``--resume`` to be continued. SIGTERM
is passed to the running stage (which checkpoints); the study then stops, and the same command with
``--resume`` continues. ``--import_from W2`` joins the work of another study with the same config (another
machine, or a second process on a free core; one study process per workdir): each selected unit that W2
finished, with the config it reads here and on the same benchmark, is copied in instead of run (`importable`).
W2 may be an archive (`r2rank_jax.study_archive`: the score files and curves of finished units, no checkpoints),
so a machine that lost the workdirs rejoins the committed rows; a unit that reads an archived unit's checkpoints
(no_cot, the analyses) then refuses to run, unless ``--retrain_archived``: the archived unit's training stages (not
its eval) then run again in ``W/PROTOCOL/NAME_retrained`` and those units read that run (its rows stay the archived
scores; the analyses report the retrained model's NDCG@10 on their users beside the archived run's). An archive's *partial* unit (stopped mid-eval, its score journals
archived) that has not started here starts with those journals (`import_partial`): its training stages run
again, and its eval replays the archived batches if they retrain the same parameters bit for bit.

After every finished unit and at the end: ``W/results.json`` and ``W/results.md``, one table per protocol
(those named, main first, then every other one the study has prepared) of every finished, current method's
rows on the same users (NDCG/HR/MRR, 95% bootstrap CIs, Wilcoxon markers and p-values against r2rank;
`r2rank_jax.eval.report`), the protocol in the header, the ``analyses`` of R2Rank's run (position sensitivity and history order, R2Rank against the
listwise baseline, on its first ``--analysis_users`` users; and how faithfully its logged rationales restate
the grounded teacher's evidence; `ANALYSES`), each of the paper's orderings tested (`PAPER_ORDERINGS`), and
each method's cost.
The last stdout line is one JSON object: ``{"study": W/study.json, "results": ..., "stopped": ...}``.
"""
from __future__ import annotations

import argparse
import contextlib
import copy
import dataclasses
import hashlib
import json
import os
import pathlib
import shutil
import sys
import time
from collections.abc import Iterator, Mapping, Sequence
from typing import Any

from r2rank_jax import ablations, runner

PROTOCOLS: dict[str, dict[str, Any]] = {
    "popularity": {"overrides": ("data.negatives=popularity",),
                   "description": "negatives drawn in proportion to their train-split popularity"},
    "uniform": {"overrides": ("data.negatives=uniform",), "description": "negatives drawn uniformly"},
}
MAIN_PROTOCOL = "popularity"
CLASSIC: tuple[str, ...] = ("random", "popularity", "sasrec", "bert4rec", "lightgcn")
REFERENCE = "r2rank"
# What a run of each method reads of the config (dotted paths into config.to_dict), for its hash.
_COMMON = ("name", "method", "seed", "tokenizer", "data", "model", "eval")
_R2RANK_READS = (*_COMMON, "sft", "rl", "teacher")
_NO_LISTWISE = ("eval.baselines=", "eval.listwise=false")
# Not part of a unit's hash: eval.baseline_args is read only by the classic baselines, whose own hash holds
# their arguments; eval.batch_users is a decode batch size, which changes no score beyond float rounding
# (tests/launch/test_eval_batch_users.py), so changing it does not invalidate a finished run.
_NOT_READ = ("eval.baseline_args", "eval.batch_users")


@dataclasses.dataclass(frozen=True)
class Method:
    """One method of the study: `rows` maps each table row to the score file (eval/scores/STEM.jsonl) of its run."""

    name: str
    rows: dict[str, str]
    overrides: tuple[str, ...] = ()      # launcher F=V overrides (after the user's: they win)
    reads: tuple[str, ...] = ()          # the config it reads (hashed)
    trained: bool = True                 # runs on --trained_protocols only
    starts_from: str | None = None       # the method whose teacher/ and sft/ this one copies
    stages: tuple[str, ...] | None = None   # None: the launcher method's own stages, then eval
    classic: bool = False                # a classic baseline: python -m r2rank_jax.baselines.NAME
    analyses_of: str | None = None       # the analyses (python -m r2rank_jax.analyses.STAGE) of this method's run

    @property
    def launcher_method(self) -> str:
        methods = [o.partition("=")[2] for o in self.overrides if o.startswith("method=")]
        return methods[-1] if methods else "r2rank"


def _llm(name: str, extra_reads: tuple[str, ...] = ()) -> Method:
    """A trained LLM baseline: launcher method `name`, its config section `name`, its one row."""
    reads = (*_COMMON, "rl.batch_users", name, *extra_reads)
    return Method(name, {name: name}, (f"method={name}", f"eval.methods={name}", f"eval.reference={name}", *_NO_LISTWISE),
                  reads)


def _ablation(name: str, **kw) -> Method:
    return Method(name, {name: "r2rank"}, ("method=r2rank", *ablations.ABLATIONS[name], *ablations.ABLATION_EVAL,
                                           "eval.listwise=false"), _R2RANK_READS, **kw)


# An extra, not in the paper: R2Rank with 10x the SFT steps at the same peak rate (docs/study.md, "Methods"),
# to test whether the comparison with the history that 60 steps left unlearnt is learnt with more.
LONG_SFT = ("sft.steps=600", "sft.optim.decay_steps=595", "sft.eval_every=200", "sft.checkpoint_every=50")

METHODS: dict[str, Method] = {m.name: m for m in (
    *(Method(n, {n: n}, classic=True, trained=False, stages=()) for n in CLASSIC),
    Method("zero_shot", {"zero_shot_pointwise": "zero_shot_pointwise", "zero_shot_listwise": "zero_shot_listwise"},
           ("method=zero_shot_pointwise", "eval.methods=zero_shot_pointwise", "eval.reference=zero_shot_pointwise",
            "eval.baselines=", "eval.listwise=true"), (*_COMMON, "rl.batch_users"), trained=False, stages=("eval",)),
    _llm("tallrec"),
    _llm("prompt4nr"),
    _llm("r2ec"),
    _llm("r2rec", extra_reads=("sft", "rl", "teacher")),        # R2Rec trains with the sft/rl/teacher sections
    Method("r2rank", {"r2rank": "r2rank", "sft_only": "sft_only"},
           ("method=r2rank", "eval.methods=r2rank,sft_only", "eval.reference=r2rank", *_NO_LISTWISE), _R2RANK_READS),
    _ablation("rl_only"),
    _ablation("mlp_only"),
    _ablation("no_cot", starts_from="r2rank", stages=("rl", "eval")),
    Method("analyses", {}, analyses_of="r2rank", stages=("position", "history_order", "rationale_fidelity")),
    Method("r2rank_long_sft", {"r2rank_long_sft": "r2rank", "sft_only_long_sft": "sft_only"},
           ("method=r2rank", "eval.methods=r2rank,sft_only", "eval.reference=r2rank", *_NO_LISTWISE, *LONG_SFT),
           _R2RANK_READS),
)}
# The analyses of R2Rank's run (issue item 6), on its first `--analysis_users` evaluated users: every candidate's
# score with the positive moved to positions 1/10/20, and NDCG@10 over shuffled histories; for R2Rank and the
# listwise baseline (the base model, all candidates in one prompt).
ANALYSES: dict[str, tuple[str, ...]] = {
    "position": ("--methods", "r2rank,zero_shot_listwise", "--positions", "1,10,20"),
    "history_order": ("--methods", "r2rank,zero_shot_listwise", "--shuffles", "3", "--seed", "0"),
    # the eval stage's logged rationales (32 users) against the grounded teacher's text; no model is run
    "rationale_fidelity": ("--methods", "r2rank,sft_only"),
}
ANALYSIS_USERS = 50
# The paper's orderings, tested on every protocol's table whichever way they fall (eval/orderings.py): better row,
# worse row, claim. "LLM+MLP" is the paper's RL-only setting (base model and head trained by RL).
PAPER_ORDERINGS: tuple[tuple[str, str, str], ...] = (
    ("r2rank", "zero_shot_pointwise", "R2Rank > zero-shot pointwise (Table 2)"),
    ("r2rank", "zero_shot_listwise", "R2Rank > zero-shot listwise (Table 2)"),
    ("r2rank", "tallrec", "R2Rank > TALLRec (Table 2)"),
    ("r2rank", "prompt4nr", "R2Rank > Prompt4NR (Table 2)"),
    ("r2rank", "r2ec", "R2Rank > R²ec (Table 2)"),
    ("r2rank", "r2rec", "R2Rank > R2Rec (Table 2)"),
    ("r2rank", "sasrec", "R2Rank > SASRec (Table 2; the study's goal)"),
    ("r2rank", "bert4rec", "R2Rank > BERT4Rec (Table 2)"),
    ("r2rank", "lightgcn", "R2Rank > LightGCN (Table 2)"),
    ("r2rank", "sft_only", "SFT&RL > SFT-only (RL adds to the warm start)"),
    ("r2rank", "rl_only", "SFT&RL > RL-only (Table 3)"),
    ("rl_only", "mlp_only", "LLM+MLP (RL-only) > MLP-only (Table 3)"),
    ("r2rank", "no_cot", "with CoT > without CoT (Table 5)"),
)
PREPARE = "prepare"
PREPARE_READS = ("name", "tokenizer", "data")


# ------------------------------------------------------------------------------------------- the plan

@dataclasses.dataclass(frozen=True)
class Unit:
    """One step of the study: a protocol's prepare, or one method on one protocol."""

    protocol: str
    method: Method | None                 # None: the protocol's prepare
    run: runner.Run
    config: dict[str, Any]                # what it reads of its resolved config (hashed)
    hash: str
    split: str
    max_users: int
    seed: int

    @property
    def name(self) -> str:
        return PREPARE if self.method is None else self.method.name

    @property
    def key(self) -> str:
        return f"{self.protocol}/{self.name}"


def _pick(d: Mapping[str, Any], paths: Sequence[str]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for path in paths:
        head, _, rest = path.partition(".")
        if rest:
            out.setdefault(head, {}).update(_pick(d[head], [rest]))
        else:
            out[head] = copy.deepcopy(d[head])
    return out


def _reads(d: Mapping[str, Any], paths: Sequence[str]) -> dict[str, Any]:
    """`paths` of config dict `d`, less `_NOT_READ`."""
    out = _pick(d, paths)
    for path in _NOT_READ:
        head, _, leaf = path.partition(".")
        out.get(head, {}).pop(leaf, None)
    return out


def _canonical(obj: Any) -> str:
    return json.dumps(obj, sort_keys=True, ensure_ascii=False)


def config_hash(config: Mapping[str, Any]) -> str:
    return hashlib.sha256(_canonical(config).encode()).hexdigest()


def _resolve(config_path: str, overrides: Sequence[str]):
    """The config a launcher run with these ``--config.F=V`` words resolves (as it writes config.json)."""
    from r2rank_jax.config import apply_overrides, load_config_file, resolve_backend_defaults

    items = {}
    for o in overrides:
        key, _, value = o.partition("=")
        items[key[len("--config."):]] = value
    return resolve_backend_defaults(apply_overrides(load_config_file(config_path), items))


def _stages(method: Method) -> tuple[str, ...]:
    if method.stages is not None:
        return method.stages
    from r2rank_jax.methods import registry
    from r2rank_jax.methods.protocol import stages_of

    return (*stages_of(registry.get(method.launcher_method)), "eval")


def plan(config_path: str, extra: Sequence[str], workdir: str | pathlib.Path, protocols: Sequence[str],
         trained_protocols: Sequence[str], methods: Sequence[str] | None = None,
         analysis_users: int = ANALYSIS_USERS) -> list[Unit]:
    """Every unit of the study in run order: per protocol its prepare, then `methods` (default all) in
    `METHODS` order (trained methods only on `trained_protocols`). Raises ValueError (ConfigError) for an
    unknown method or protocol, or a protocol the config's data source cannot prepare."""
    from r2rank_jax import baselines
    from r2rank_jax.config import to_dict
    from r2rank_jax.stages import prepare

    root = pathlib.Path(workdir)
    wanted = list(METHODS) if methods is None else list(methods)
    unknown = [m for m in wanted if m not in METHODS]
    if unknown:
        raise ValueError(f"--only: unknown method(s) {unknown}; known: {list(METHODS)}")
    bad = [p for p in (*protocols, *trained_protocols) if p not in PROTOCOLS]
    if bad:
        raise ValueError(f"unknown protocol(s) {bad}; known: {list(PROTOCOLS)}")
    units: list[Unit] = []
    for protocol in sorted(protocols, key=lambda p: p != MAIN_PROTOCOL):
        base = [*extra, *(f"--config.{o}" for o in PROTOCOLS[protocol]["overrides"])]
        cfg = _resolve(config_path, base)
        try:
            prepare.plan(cfg)
        except ValueError as e:
            raise ValueError(f"protocol {protocol!r}: {e}") from None
        d = to_dict(cfg)
        here = root / protocol
        prep = _pick(d, PREPARE_READS)
        units.append(Unit(protocol, None, runner.Run(f"{protocol}/{PREPARE}", here / PREPARE, tuple(base[len(extra):]),
                                                     (PREPARE,)),
                          prep, config_hash(prep), cfg.eval.split, cfg.eval.max_users, cfg.seed))
        for name in wanted:
            m = METHODS[name]
            if m.trained and protocol not in trained_protocols:
                continue
            if m.analyses_of:
                of = next((u for u in units if u.protocol == protocol and u.name == m.analyses_of), None)
                if of is None:
                    raise ValueError(f"{name} needs {m.analyses_of} in the same plan (with_dependencies adds it)")
                reads = {"of": of.hash, "users": analysis_users, "analyses": {k: list(v) for k, v in ANALYSES.items()}}
                run = runner.Run(f"{protocol}/{name}", here / name, (), m.stages)
                units.append(Unit(protocol, m, run, reads, config_hash(reads), of.split, analysis_users, of.seed))
                continue
            if m.classic:
                args = baselines.plan(CLASSIC, cfg.eval.baseline_args)[name]
                reads = {"data": d["data"], "split": cfg.eval.split, "max_users": cfg.eval.max_users,
                         "baseline": name, "args": args}
                run = runner.Run(f"{protocol}/{name}", here / name, (), ())
                units.append(Unit(protocol, m, run, reads, config_hash(reads), cfg.eval.split, cfg.eval.max_users,
                                  cfg.seed))
                continue
            overrides = (*base[len(extra):], *(f"--config.{o}" for o in m.overrides))
            mcfg = _resolve(config_path, [*extra, *overrides])
            stages = _stages(m)
            if m.launcher_method == "r2rank" and mcfg.sft.steps == 0:      # R2Rank skips both then (RL-only)
                stages = tuple(s for s in stages if s not in ("synthesize", "sft"))
            reads = {"config": _reads(to_dict(mcfg), m.reads), "stages": list(stages), "starts_from": m.starts_from}
            copy_from = here / m.starts_from if m.starts_from else None
            run = runner.Run(f"{protocol}/{name}", here / name, overrides, stages, copy_from=copy_from,
                             reused=("teacher", "sft"))
            units.append(Unit(protocol, m, run, reads, config_hash(reads), mcfg.eval.split, mcfg.eval.max_users,
                              mcfg.seed))
    return units


def summarized_protocols(named: Sequence[str], state: StudyState) -> list[str]:
    """The protocols results.* cover: those named, then every other one whose prepare the study has recorded,
    so a run on one protocol does not drop another's finished table."""
    recorded = [p for p in PROTOCOLS if p not in named and state.unit(f"{p}/{PREPARE}") is not None]
    return [*named, *recorded]


def with_dependencies(names: Sequence[str]) -> list[str]:
    """`names` plus the methods they start from (no_cot needs r2rank's SFT, the analyses its run)."""
    out = list(names)
    for name in names:
        m = METHODS[name]
        for dep, why in ((m.starts_from, "starts from {}'s SFT"), (m.analyses_of, "reads {}'s run")):
            if dep and dep not in out:
                print(f"# {name} {why.format(dep)}: {dep} added", flush=True)
                out.append(dep)
    return [m for m in METHODS if m in out]


# ------------------------------------------------------------------------------------------- the state

class StudyState:
    """W/study.json: {"units": {KEY: {"hash", "status", "workdir", "stages": {STAGE: {...}}, ...}}}."""

    def __init__(self, root: pathlib.Path):
        self.path = root / "study.json"
        self.data: dict[str, Any] = json.loads(self.path.read_text()) if self.path.is_file() else {"units": {}}

    @property
    def exists(self) -> bool:
        return self.path.is_file()

    def unit(self, key: str) -> dict[str, Any] | None:
        return self.data["units"].get(key)

    def save(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.path.with_name(self.path.name + ".tmp")
        tmp.write_text(json.dumps(self.data, indent=2, ensure_ascii=False) + "\n")
        os.replace(tmp, self.path)


def changed_fields(old: Mapping[str, Any], new: Mapping[str, Any], prefix: str = "") -> list[str]:
    """The dotted fields whose value differs between a unit's recorded config `old` and its config now.
    A field `old` lacks (added to the schema since it was recorded) counts only when its value is not the
    schema default, so a new field leaves finished runs current."""
    new = json.loads(_canonical(new))                 # tuples as lists, like the recorded config
    out = []
    for key in sorted(set(old) | set(new)):
        path = prefix + key
        if key not in old:
            if new[key] != _default(path):
                out.append(path)
        elif key not in new:
            out.append(path)
        elif isinstance(old[key], dict) and isinstance(new[key], dict):
            out += changed_fields(old[key], new[key], path + ".")
        elif old[key] != new[key]:
            out.append(path)
    return out


def _default(path: str) -> Any:
    """The ExperimentConfig default at `path` (a leading ``config.`` is a launcher unit's), else a marker
    that equals nothing."""
    from r2rank_jax.config import ExperimentConfig, to_dict

    value: Any = json.loads(_canonical(to_dict(ExperimentConfig())))
    for part in path.removeprefix("config.").split("."):
        if not isinstance(value, dict) or part not in value:
            return object()
        value = value[part]
    return value


def is_current(unit: Unit, entry: Mapping[str, Any]) -> bool:
    """Whether `entry` (study.json) was made with the config `unit` reads now."""
    return entry["hash"] == unit.hash or not changed_fields(entry["config"], unit.config)


def status(unit: Unit, state: StudyState) -> str:
    """done (finished, same config), changed (started or finished with another config), resume (started),
    or todo."""
    entry = state.unit(unit.key)
    if entry is None:
        return "todo"
    if not is_current(unit, entry):
        return "changed"
    return "done" if entry["status"] == "finished" else "resume"


@contextlib.contextmanager
def _lock(root: pathlib.Path) -> Iterator[None]:
    import fcntl

    root.mkdir(parents=True, exist_ok=True)
    with open(root / "study.lock", "w") as f:
        try:
            fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise SystemExit(f"error: another study process is running in {root} (it holds {root / 'study.lock'})")
        yield


# ------------------------------------------------------------------------------------------- running

def _tokens(metrics: pathlib.Path, offset: int) -> dict[str, float]:
    """Tokens the training loops reported in the metrics.jsonl lines after byte `offset`, per logged stage:
    each logged row holds the window's tokens/s and steps/s, so tokens = tokens_per_s / steps_per_s × the
    steps since the stage's previous row (approximate across a resume)."""
    if not metrics.is_file():
        return {}
    last: dict[str, int] = {}
    out: dict[str, float] = {}
    with open(metrics, "rb") as f:
        head = f.read(offset)
        rest = f.read()
    for raw, counted in ((head, False), (rest, True)):
        for line in raw.decode(errors="replace").splitlines():
            try:
                row = json.loads(line)
            except json.JSONDecodeError:
                continue
            stage, step = row.get("stage"), row.get("step")
            if not isinstance(step, int) or "tokens_per_s" not in row or not row.get("steps_per_s"):
                continue
            if counted:
                steps = step - last.get(stage, 0)
                out[stage] = out.get(stage, 0.0) + row["tokens_per_s"] / row["steps_per_s"] * max(steps, 0)
            last[stage] = step
    return {k: round(v) for k, v in out.items()}


def _new_stage() -> dict[str, Any]:
    return {"attempts": 0, "wall_s": 0.0, "cpu_s": 0.0, "peak_rss_bytes": 0, "tokens": {}, "finished": False}


def _record_stage(entry: dict[str, Any], stage: str, result: runner.Finished, tokens: dict[str, float]) -> None:
    s = entry["stages"].setdefault(stage, _new_stage())
    s["attempts"] += 1
    s["wall_s"] = round(s["wall_s"] + result.wall_s, 3)
    s["cpu_s"] = round(s["cpu_s"] + result.cpu_s, 3)
    s["peak_rss_bytes"] = max(s["peak_rss_bytes"], result.peak_rss_bytes)
    for k, v in tokens.items():
        s["tokens"][k] = s["tokens"].get(k, 0) + v
    s["finished"] = result.ok
    s["exit"] = result.rc


def _benchmark(root: pathlib.Path, protocol: str) -> pathlib.Path:
    return root / protocol / PREPARE / "data" / "benchmark"


def _content_hash(benchmark: pathlib.Path) -> str | None:
    return json.loads((benchmark / "manifest.json").read_text()).get("content_hash")


def _records(root: pathlib.Path, unit: Unit):
    from r2rank_jax.data.benchmark import load_split

    records = load_split(_benchmark(root, unit.protocol), unit.split)
    return records[:unit.max_users] if unit.max_users else records


def _link_data(unit: Unit, root: pathlib.Path) -> None:
    """W/PROTOCOL/METHOD/data -> ../prepare/data (the protocol's one prepared benchmark)."""
    unit.run.workdir.mkdir(parents=True, exist_ok=True)
    link = unit.run.workdir / "data"
    if not link.is_symlink() and not link.exists():
        link.symlink_to(pathlib.Path("..") / PREPARE / "data", target_is_directory=True)


def _check_written_config(unit: Unit) -> None:
    """The config.json the launcher wrote reads as the study planned (catches an override the launcher read
    otherwise)."""
    written = json.loads((unit.run.workdir / "config.json").read_text())
    if _canonical(_reads(written, unit.method.reads)) != _canonical(unit.config["config"]):
        raise RuntimeError(f"{unit.key}: {unit.run.workdir / 'config.json'} differs from the planned config")


def run_unit(unit: Unit, state: StudyState, root: pathlib.Path, config: str, extra: Sequence[str],
             children: runner.Children) -> bool:
    """Runs the unit's unfinished stages; True when it finished, False when SIGTERM stopped it. A failing
    stage raises RuntimeError (the unit stays unfinished)."""
    entry = state.unit(unit.key)
    if entry is None or not is_current(unit, entry):
        entry = {"hash": unit.hash, "status": "running", "workdir": str(unit.run.workdir), "started": time.time(),
                 "config": unit.config, "stages": {}}
        state.data["units"][unit.key] = entry
        state.save()
    m = unit.method
    _refuse_archived_source(unit, state)
    if m is None:
        stages = (PREPARE,)
    elif m.classic:
        scores = unit.run.workdir / "eval" / "scores"
        scores.mkdir(parents=True, exist_ok=True)
        full = scores / f"{m.name}.full.jsonl"
        stages = (m.name,)
    elif m.analyses_of:
        of = state.unit(f"{unit.protocol}/{m.analyses_of}")
        if of is None or of["status"] != "finished" or of["hash"] != unit.config["of"]:
            raise RuntimeError(f"{unit.key}: needs {unit.protocol}/{m.analyses_of} finished with its current config")
        unit.run.workdir.mkdir(parents=True, exist_ok=True)
        stages = unit.run.stages
    else:
        _link_data(unit, root)
        if unit.run.copy_from is not None:
            runner.start_from(dataclasses.replace(unit.run, copy_from=source_workdir(unit, state, root)))
        stages = unit.run.stages
    metrics = unit.run.workdir / "metrics.jsonl"
    for stage in stages:
        seen = entry["stages"].get(stage)
        if seen and seen.get("finished"):
            print(f"# {unit.key}: stage {stage} finished", flush=True)
            continue
        if children.stopped:
            return False
        module, argv = _stage_command(unit, root, config, extra, stage, started=seen is not None,
                                      source=source_workdir(unit, state, root))
        entry["stages"].setdefault(stage, _new_stage())
        state.save()                      # started: a later attempt resumes it
        offset = metrics.stat().st_size if metrics.is_file() else 0
        result = children.run(module, argv)
        _record_stage(entry, stage, result, _tokens(metrics, offset))
        state.save()
        if children.stopped or result.preempted:
            return False
        if result.rc != 0:
            raise RuntimeError(f"{unit.key}: stage {stage} failed (exit {result.rc}); see its output above. After a "
                               "fix, the same command with --resume continues from this stage")
    bench = _benchmark(root, unit.protocol)
    if m is not None and m.classic:
        from r2rank_jax.eval.score_files import write_subset

        write_subset(full, _records(root, unit), scores / f"{m.name}.jsonl")
    elif m is not None and not m.analyses_of:
        _check_written_config(unit)
    entry.update(status="finished", finished=time.time(), content_hash=_content_hash(bench))
    state.save()
    return True


def _source_name(unit: Unit) -> str | None:
    """The method whose checkpoints `unit` reads (no_cot: r2rank's SFT; the analyses: r2rank's run), or None."""
    m = unit.method
    return (m.starts_from or m.analyses_of) if m is not None else None


def _refuse_archived_source(unit: Unit, state: StudyState) -> None:
    """A unit that starts from another's checkpoints (no_cot from r2rank's SFT, the analyses of r2rank's run)
    cannot start from a unit imported from an archive (`r2rank_jax.study_archive`: scores, no checkpoints)."""
    source = _source_name(unit)
    entry = state.unit(f"{unit.protocol}/{source}") if source else None
    if entry is not None and entry.get("archived") and not entry.get("retrained", {}).get("finished"):
        raise RuntimeError(f"{unit.key} reads {unit.protocol}/{source}'s checkpoints, but {source} was imported from an "
                           f"archive ({entry.get('imported_from')}), which keeps its scores, not its checkpoints: run "
                           f"{unit.key} in a study where {source} ran (or was imported from one that ran it), or add "
                           f"--retrain_archived to train {source} again here (its training stages, not its eval)")


def retrained_run(source: Unit) -> runner.Run:
    """Where `--retrain_archived` trains an archived unit again: its training stages (no eval) in
    ``W/PROTOCOL/NAME_retrained``, beside the imported workdir (which keeps the archived scores and curves)."""
    return dataclasses.replace(source.run, name=f"{source.key}_retrained",
                               workdir=source.run.workdir.with_name(f"{source.name}_retrained"),
                               stages=tuple(s for s in source.run.stages if s != "eval"))


def source_workdir(unit: Unit, state: StudyState, root: pathlib.Path, retrain: bool = False) -> pathlib.Path | None:
    """The run whose checkpoints `unit` reads (no_cot: r2rank's SFT; the analyses: r2rank's run): the source's
    workdir, or its retrained one when the source was imported from an archive and trained again here (or,
    `retrain`, is to be)."""
    name = _source_name(unit)
    if not name:
        return None
    entry = state.unit(f"{unit.protocol}/{name}") or {}
    retrained = entry.get("retrained", {})
    if entry.get("archived") and (retrained.get("finished") or retrain):
        return root / unit.protocol / f"{name}_retrained"
    return root / unit.protocol / name


def _to_retrain(unit: Unit, units: Sequence[Unit], state: StudyState) -> Unit | None:
    """The archived unit whose checkpoints `unit` reads and that has not been trained again here, or None."""
    name = _source_name(unit)
    entry = state.unit(f"{unit.protocol}/{name}") if name else None
    if entry is None or not entry.get("archived") or entry.get("retrained", {}).get("finished"):
        return None
    return next(u for u in units if u.key == f"{unit.protocol}/{name}")


def retrain_source(unit: Unit, units: Sequence[Unit], state: StudyState, root: pathlib.Path, config: str,
                   extra: Sequence[str], children: runner.Children) -> bool:
    """`--retrain_archived`: when `unit` reads the checkpoints of a unit imported from an archive (scores, no
    checkpoints), train that unit again here (`retrained_run`; resumable like any unit, recorded under its
    entry's ``retrained``). Its rows stay the archived scores; what reads the retrained run says so (the
    analyses compare its NDCG@10 on their users with the archived run's). False when SIGTERM stopped it."""
    source = _to_retrain(unit, units, state)
    if source is None:
        return True
    entry = state.unit(source.key)
    run = retrained_run(source)
    if "retrained" not in entry and run.workdir.exists():
        shutil.rmtree(run.workdir)                 # left by a retraining of an earlier import of this unit
    retrained = entry.setdefault("retrained", {"workdir": str(run.workdir), "stages": {}, "finished": False})
    print(f"# {source.key}: imported from an archive without checkpoints; --retrain_archived trains it again in "
          f"{run.workdir} ({', '.join(run.stages)})", flush=True)
    _link_data(dataclasses.replace(source, run=run), root)
    metrics = run.workdir / "metrics.jsonl"
    for stage in run.stages:
        seen = retrained["stages"].get(stage)
        if seen and seen.get("finished"):
            continue
        if children.stopped:
            return False
        retrained["stages"].setdefault(stage, _new_stage())
        state.save()
        offset = metrics.stat().st_size if metrics.is_file() else 0
        result = children.run(runner.LAUNCH, runner.launch_argv(run, config, extra, stage, resume=seen is not None))
        _record_stage(retrained, stage, result, _tokens(metrics, offset))
        state.save()
        if children.stopped or result.preempted:
            return False
        if result.rc != 0:
            raise RuntimeError(f"{source.key}: retraining stage {stage} failed (exit {result.rc}); see its output above")
    retrained["finished"] = True
    state.save()
    return True


def importable(unit: Unit, theirs: Mapping[str, Any] | None, content: str | None) -> str | None:
    """Why another study's entry for `unit` cannot stand in for running it here (None: it can): it must have
    finished, with the config `unit` reads now, on a benchmark with this study's content hash."""
    if unit.method is None:
        return "a protocol's prepare is run, not imported"
    if theirs is None:
        return "not in that study"
    if theirs.get("status") != "finished":
        return "not finished there"
    if not is_current(unit, theirs):
        return "finished there with another config"
    if content is None or theirs.get("content_hash") != content:
        return "finished there on another benchmark (content hash)"
    return None


def import_unit(unit: Unit, theirs: Mapping[str, Any], source: pathlib.Path, state: StudyState) -> None:
    """Copies the unit's finished workdir from the study at `source` (links kept as links: `data` points at
    ../prepare/data, this study's own benchmark) and records its entry, the workdir rewritten."""
    there = source / unit.protocol / unit.name
    if unit.run.workdir.exists():
        shutil.rmtree(unit.run.workdir)           # an unfinished attempt of this study
    shutil.copytree(there, unit.run.workdir, symlinks=True)
    entry = json.loads(json.dumps(theirs))
    entry.update(workdir=str(unit.run.workdir), imported_from=str(there))
    state.data["units"][unit.key] = entry
    state.save()


def partial_importable(unit: Unit, theirs: Mapping[str, Any] | None, content: str | None) -> bool:
    """Whether an archive's partial entry (`r2rank_jax.study_archive`) continues `unit` here: the same config
    hash, on a benchmark with this study's content hash."""
    return (theirs is not None and theirs.get("hash") == unit.hash and content is not None
            and theirs.get("content_hash") == content)


def import_partial(unit: Unit, theirs: Mapping[str, Any], source: pathlib.Path, state: StudyState) -> int:
    """Starts `unit` (not started here) with an archive's eval journals: copies them into its run and records
    the unit as running with its eval stage started, so that the eval continues them (``--resume``) once the
    training stages have run again. Returns the number of journaled batches."""
    there = source / unit.protocol / unit.name
    for rel in theirs["files"]:
        (unit.run.workdir / rel).parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(there / rel, unit.run.workdir / rel)
    state.data["units"][unit.key] = {"hash": unit.hash, "status": "running", "workdir": str(unit.run.workdir),
                                     "started": time.time(), "config": unit.config, "stages": {"eval": _new_stage()},
                                     "journals_from": str(there)}
    state.save()
    return sum(int(n) for n in theirs.get("batches", {}).values())


def _stage_command(unit: Unit, root: pathlib.Path, config: str, extra: Sequence[str], stage: str,
                   started: bool = False, source: pathlib.Path | None = None) -> tuple[str, list[str]]:
    """(module, arguments) of one stage of `unit`. A classic baseline is called as the eval stage calls it
    (the whole split, the config's eval.baseline_args); a training stage started before resumes; an
    interrupted prepare (nothing uses its output yet) overwrites what it left."""
    if unit.method is None:
        argv = unit.run.argv(config, extra, PREPARE)
        if started and (unit.run.workdir / "data").exists():
            argv.insert(-1, "--overwrite")
        return runner.LAUNCH, argv
    if unit.method.analyses_of:
        of = source or root / unit.protocol / unit.method.analyses_of
        # a retrained run has no eval stage, so no logged rationales: the fidelity check says it was skipped
        missing_ok = ["--skip_missing_log"] if stage == "rationale_fidelity" and of.name.endswith("_retrained") else []
        return f"r2rank_jax.analyses.{stage}", ["--workdir", str(of), "--out", str(unit.run.workdir), "--max-users",
                                                str(unit.max_users), *ANALYSES[stage], *missing_ok]
    if unit.method.classic:
        full = unit.run.workdir / "eval" / "scores" / f"{unit.name}.full.jsonl"
        return f"r2rank_jax.baselines.{unit.name}", ["--benchmark", str(_benchmark(root, unit.protocol)), "--out",
                                                      str(full), "--split", unit.split, *unit.config["args"]]
    return runner.LAUNCH, runner.launch_argv(unit.run, config, extra, stage, resume=started)


def _wipe(unit: Unit, state: StudyState) -> None:
    if unit.run.workdir.exists():
        print(f"# {unit.key}: config changed; --rerun_changed removes {unit.run.workdir}", flush=True)
        shutil.rmtree(unit.run.workdir)
    state.data["units"].pop(unit.key, None)
    state.save()


def _describe(unit: Unit, state: StudyState) -> str:
    s = status(unit, state)
    note = {"done": "done", "changed": "CONFIG CHANGED since it started", "resume": "interrupted: continues",
            "todo": "to run"}[s]
    extra = f"; starts from {unit.run.copy_from}'s teacher/ and sft/ (copied)" if unit.run.copy_from else ""
    return f"# {unit.key}: {note} (config {unit.hash[:12]}){extra}"


def _commands(unit: Unit, root: pathlib.Path, config: str, extra: Sequence[str], state: StudyState,
              retrain: bool = False) -> list[str]:
    entry = state.unit(unit.key) if status(unit, state) == "resume" else None
    stages = (entry or {}).get("stages", {})
    stages_of = (PREPARE,) if unit.method is None else (unit.name,) if unit.method.classic else unit.run.stages
    return [runner.command_line(*_stage_command(unit, root, config, extra, s, started=s in stages,
                                                source=source_workdir(unit, state, root, retrain)))
            for s in stages_of if not stages.get(s, {}).get("finished")]


# ------------------------------------------------------------------------------------------- results

def _cost(entry: Mapping[str, Any]) -> dict[str, Any]:
    stages = entry.get("stages", {})
    generated = sum(s.get("tokens", {}).get("rl", 0) for s in stages.values())
    return {"wall_s": round(sum(s["wall_s"] for s in stages.values()), 1),
            "cpu_s": round(sum(s["cpu_s"] for s in stages.values()), 1),
            "peak_rss_gib": round(max((s["peak_rss_bytes"] for s in stages.values()), default=0) / 2 ** 30, 3),
            "generated_tokens": generated or None,
            "stages": {k: {"wall_s": s["wall_s"], "cpu_s": s["cpu_s"], "peak_rss_gib": round(s["peak_rss_bytes"] / 2 ** 30, 3),
                           "attempts": s["attempts"], "tokens": s.get("tokens") or None} for k, s in stages.items()}}


def summarize(root: pathlib.Path, units: Sequence[Unit], state: StudyState) -> dict[str, Any]:
    """One results table per protocol from every finished unit whose config is current (module docstring); draws
    each trained unit's curves into W/curves on the way."""
    from r2rank_jax.eval import orderings
    from r2rank_jax.eval.evaluate import evaluate_score_files
    from r2rank_jax.eval.per_user import METRICS
    from r2rank_jax.eval.report import build_results

    # A run's own results.json fields the joined table recomputes; the rest (sft_only's answer_tag_rate, the
    # listwise parse statistics) are carried over.
    recomputed = {*METRICS, "ties"}

    out: dict[str, Any] = {"main_protocol": MAIN_PROTOCOL, "protocols": {}}
    protocols = list(dict.fromkeys(u.protocol for u in units))
    for protocol in protocols:
        prep = next(u for u in units if u.protocol == protocol and u.method is None)
        if status(prep, state) != "done":
            continue
        bench = _benchmark(root, protocol)
        content = _content_hash(bench)
        records = _records(root, prep)
        paths, rows_of, costs, stale, extras = {}, {}, {"prepare": _cost(state.unit(prep.key))}, [], {}
        curves: dict[str, str] = {}
        analyses: dict[str, dict[str, Any]] = {}
        for unit in units:
            if unit.protocol != protocol or unit.method is None:
                continue
            entry = state.unit(unit.key)
            if entry is None or entry["status"] != "finished":
                continue
            if not is_current(unit, entry) or entry.get("content_hash") != content:
                stale.append(unit.name)
                continue
            if unit.method.analyses_of:
                analyses[unit.name] = {stage: json.loads((unit.run.workdir / f"{stage}.json").read_text())
                                       for stage in unit.run.stages}
                retrained = _retrained_note(unit, state, root, records, analyses[unit.name].get("position"))
                if retrained:
                    analyses[unit.name]["retrained"] = retrained
                costs[unit.name] = _cost(entry)
                continue
            results = unit.run.workdir / "eval" / "results.json"
            theirs = json.loads(results.read_text())["methods"] if results.is_file() else {}
            for row, stem in unit.method.rows.items():
                paths[row] = unit.run.workdir / "eval" / "scores" / f"{stem}.jsonl"
                rows_of[row] = unit.name
                extras[row] = {k: v for k, v in theirs.get(stem, {}).items() if k.removesuffix("_ci") not in recomputed}
            costs[unit.name] = _cost(entry)
            curve = _write_curves(root, unit)
            if curve:
                curves[unit.name] = curve
        if not paths:
            continue
        per_user, ties = evaluate_score_files(paths, records, prep.split)     # same users and candidates, or DataError
        reference = REFERENCE if REFERENCE in paths else next(iter(paths))
        manifest = json.loads((bench / "manifest.json").read_text())
        benchmark = {"content_hash": content, "split": prep.split, "path": str(bench),
                     "num_candidates": manifest["options"]["num_candidates"]}
        res = build_results(per_user, reference, benchmark, ties, seed=prep.seed,
                            num_candidates=max(len(r.candidates) for r in records))
        for row, extra in extras.items():
            res["methods"][row].update(extra)
            res["methods"][row]["study_method"] = rows_of[row]
        res["protocol"] = {"name": protocol, "main": protocol == MAIN_PROTOCOL,
                           "description": PROTOCOLS[protocol]["description"], "options": manifest["options"],
                           "counts": manifest.get("counts"), "source": manifest.get("source"),
                           "decoding": "greedy at evaluation"}
        ours = next((u for u in units if u.protocol == protocol and u.name == REFERENCE and u.name in rows_of.values()), None)
        if ours is not None:
            res["protocol"]["rationale_max_new_tokens"] = ours.config["config"]["eval"]["max_new_tokens"]
        res["orderings"] = orderings.check_orderings(per_user, [orderings.Ordering(*o) for o in PAPER_ORDERINGS])
        position = analyses.get("analyses", {}).get("position")
        res["orderings"].append(orderings.position_claim(position, REFERENCE, "zero_shot_listwise"))
        res["users"] = [r.user_id for r in records]
        res["cost"] = costs
        if stale:
            res["stale_methods"] = stale
        if analyses:
            res["analyses"] = analyses
        if curves:
            res["curves"] = curves
        out["protocols"][protocol] = res
    return out


def _retrained_note(unit: Unit, state: StudyState, root: pathlib.Path, records: Sequence[Any],
                    position: Mapping[str, Any] | None) -> dict[str, Any] | None:
    """For analyses run on a retrained source (`--retrain_archived`): where it ran, and the NDCG@10 of the
    retrained model (the position analysis' benchmark order) beside the archived run's on the same users, so a
    reader sees whether the analysed model is the one in the table (equal where the retraining was bit for bit)."""
    of = source_workdir(unit, state, root)
    if of is None or not of.name.endswith("_retrained"):
        return None
    import numpy as np

    from r2rank_jax.analyses.position import ORIGINAL
    from r2rank_jax.eval.per_user import per_user_metrics
    from r2rank_jax.eval.score_files import align_scores, positive_indices, read_score_file

    note: dict[str, Any] = {"workdir": str(of), "of": unit.method.analyses_of}
    ours = (position or {}).get("methods", {}).get(REFERENCE)
    archived = root / unit.protocol / unit.method.analyses_of / "eval" / "scores" / f"{REFERENCE}.jsonl"
    if ours is None or not archived.is_file():
        return note
    n = int(position["num_users"])
    f = read_score_file(archived)
    keep = [i for i, u in enumerate(f.user_ids) if u in {r.user_id for r in records[:n]}]
    f = dataclasses.replace(f, **{k: tuple(getattr(f, k)[i] for i in keep)
                                  for k in ("user_ids", "candidates", "positives", "scores", "lines")})
    scores, mask = align_scores(f, records[:n])
    archived_ndcg = per_user_metrics(scores, positive_indices(records[:n]), mask=mask)["ndcg@10"]
    note.update(num_users=n, retrained_ndcg10=float(ours["ndcg@10"][ORIGINAL]),
                archived_ndcg10=float(np.mean(archived_ndcg)))
    return note


def _write_curves(root: pathlib.Path, unit: Unit) -> str | None:
    """A trained unit's curves from its metrics.jsonl, drawn to W/curves/PROTOCOL/METHOD.png: the path relative to
    W, or None for a run that logged none (a classic baseline)."""
    from r2rank_jax.report.collect import read_metrics
    from r2rank_jax.report.plots import curves_png

    png = curves_png(read_metrics(unit.run.workdir / "metrics.jsonl"), f"{unit.protocol}/{unit.name}")
    if png is None:
        return None
    rel = pathlib.Path("curves") / unit.protocol / f"{unit.name}.png"
    (root / rel).parent.mkdir(parents=True, exist_ok=True)
    (root / rel).write_bytes(png)
    return rel.as_posix()


def _render_position(result: Mapping[str, Any]) -> str:
    from r2rank_jax.analyses.position import render_markdown

    return render_markdown(dict(result))


def _render_history_order(result: Mapping[str, Any]) -> str:
    from r2rank_jax.analyses.history_order import render_markdown

    return render_markdown(dict(result))


def _render_rationale_fidelity(result: Mapping[str, Any]) -> str:
    from r2rank_jax.analyses.rationale_fidelity import render_markdown

    return render_markdown(dict(result))


ANALYSIS_RENDER = {"position": _render_position, "history_order": _render_history_order,
                   "rationale_fidelity": _render_rationale_fidelity}


def _demote(markdown: str) -> str:
    return "\n".join("##" + line if line.startswith("#") else line for line in markdown.splitlines())


def render(summary: Mapping[str, Any]) -> str:
    from r2rank_jax.eval import orderings
    from r2rank_jax.eval.report import render_markdown

    out = ["# The reproducibility study", ""]
    if not summary["protocols"]:
        return "\n".join(out + ["No method has finished yet.", ""])
    for protocol, res in summary["protocols"].items():
        p = res["protocol"]
        o = p["options"]
        split = "8:1:1 user split" if o["split"] == "user" else f"{o['split']} split"
        out += [f"## Protocol `{protocol}`{' (main table)' if p['main'] else ''}: {p['description']}", "",
                f"{split} of `{p['source']}` (history ≤ {o['history_len']} items), K = {o['num_candidates']} candidates "
                f"(1 positive, {o['num_candidates'] - 1} negatives, {o['negatives']}, seed {o['seed']}), the same "
                f"{res['num_users']} {res['benchmark']['split']} users and candidate lists for every method, "
                f"{p['decoding']}"
                + (f", R2Rank's rationales ≤ {p['rationale_max_new_tokens']} new tokens (every method's cap: docs/study.md, "
                   "Protocol)" if "rationale_max_new_tokens" in p else "") + ".", "", _demote(render_markdown(res)), ""]
        if res.get("orderings"):
            out += [_demote(orderings.render_markdown(res["orderings"])), ""]
        if res.get("stale_methods"):
            out += [f"Left out (finished with a config that has changed since; rerun with --rerun_changed): "
                    f"{', '.join(res['stale_methods'])}.", ""]
        for name, per in res.get("analyses", {}).items():
            note = per.get("retrained")
            if note:
                line = (f"The analyses below ran on {note['of']} trained again here (`--retrain_archived`, same config and "
                        f"seed): its checkpoints were not archived.")
                if "retrained_ndcg10" in note:
                    line += (f" On their {note['num_users']} users its NDCG@10 is {note['retrained_ndcg10']:.4f}, the "
                             f"archived run's {note['archived_ndcg10']:.4f} (equal when the retraining is bit for bit).")
                out += [line, ""]
            for stage, result in per.items():
                if stage in ANALYSIS_RENDER:
                    out += [_demote(_demote(ANALYSIS_RENDER[stage](result))), ""]
        if res.get("curves"):
            out += ["### Training curves", "", *(f"![{name}]({path})" for name, path in res["curves"].items()), ""]
        out += ["### Cost (this machine; all attempts of each stage)", "",
                "| study method | rows | wall s | CPU s | peak RSS GiB | tokens generated (RL rollouts) |",
                "|---|---|---:|---:|---:|---:|"]
        rows: dict[str, list[str]] = {}
        for row, entry in res["methods"].items():
            rows.setdefault(entry.get("study_method", row), []).append(row)
        for name, cost in res["cost"].items():
            tokens = "–" if cost["generated_tokens"] is None else f"{cost['generated_tokens']:,}"
            out.append(f"| {name} | {', '.join(rows.get(name, [])) or '–'} | {cost['wall_s']:.0f} | {cost['cpu_s']:.0f} | "
                       f"{cost['peak_rss_gib']:.2f} | {tokens} |")
        out.append("")
    return "\n".join(out)


# ------------------------------------------------------------------------------------------- main

def _write_results(root: pathlib.Path, summary: Mapping[str, Any]) -> None:
    (root / "results.json").write_text(json.dumps(summary, indent=2, ensure_ascii=False) + "\n")
    (root / "results.md").write_text(render(summary))


def _names(value: str, what: str, parser: argparse.ArgumentParser) -> list[str]:
    names = [v.strip() for v in value.split(",") if v.strip()]
    if len(set(names)) != len(names):
        parser.error(f"{what}: a name is listed twice: {value!r}")
    return names


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m r2rank_jax.study", description=__doc__.split("\n\n")[0],
                                     epilog="methods: " + ", ".join(METHODS) + "; protocols: " + ", ".join(PROTOCOLS))
    parser.add_argument("--config", required=True)
    parser.add_argument("--workdir", required=True)
    parser.add_argument("--only", default="", help="comma-separated methods (default: all); no_cot brings r2rank")
    parser.add_argument("--protocols", default=",".join(PROTOCOLS), help=f"comma-separated, of {list(PROTOCOLS)}")
    parser.add_argument("--trained_protocols", default=MAIN_PROTOCOL,
                        help="protocols the trained methods run on (default: the main one)")
    parser.add_argument("--resume", action="store_true", help="continue the study in --workdir")
    parser.add_argument("--rerun_changed", action="store_true",
                        help="rerun (from scratch) the selected methods whose config changed since they started")
    parser.add_argument("--import_from", default="",
                        help="another study's workdir (same config, e.g. run on another machine or core): its finished "
                             "units with the config they read here, on the same benchmark, are copied in instead of run")
    parser.add_argument("--retrain_archived", action="store_true",
                        help="a unit that reads the checkpoints of a unit imported from an archive (no_cot, the analyses) "
                             "first trains that unit again here (its training stages, not its eval; its rows stay the "
                             "archived scores)")
    parser.add_argument("--dry_run", action="store_true", help="print the plan and the commands only")
    parser.add_argument("--analysis_users", type=int, default=ANALYSIS_USERS,
                        help=f"users of R2Rank's run the analyses rescore (default {ANALYSIS_USERS})")
    args, extra = runner.parse_args(parser, argv)
    root = pathlib.Path(args.workdir)
    protocols = _names(args.protocols, "--protocols", parser)
    trained = _names(args.trained_protocols, "--trained_protocols", parser)
    only = _names(args.only, "--only", parser) if args.only.strip() else None
    unknown = [m for m in only or () if m not in METHODS]
    if unknown:
        parser.error(f"--only: unknown method(s) {unknown}; known: {list(METHODS)}")
    only = with_dependencies(only) if only else None
    idle = [m for m in (only or ()) if METHODS[m].trained and not set(protocols) & set(trained)]
    if idle:
        parser.error(f"--only {idle}: trained methods run on --trained_protocols {trained}, none of which is in "
                     f"--protocols {protocols}")
    if args.analysis_users < 1:
        parser.error(f"--analysis_users must be >= 1, got {args.analysis_users}")
    state = StudyState(root)
    try:
        units = plan(args.config, extra, root, protocols, trained, only, args.analysis_users)
        everything = plan(args.config, extra, root, summarized_protocols(protocols, state), list(PROTOCOLS), None,
                          args.analysis_users)
    except ValueError as e:
        parser.error(str(e))
    source = pathlib.Path(args.import_from) if args.import_from else None
    if source is not None and (not (source / "study.json").is_file() or source.resolve() == root.resolve()):
        parser.error(f"--import_from {source}: no study.json there (or it is --workdir itself)")
    theirs = StudyState(source) if source is not None else None
    if args.dry_run:
        for unit in units:
            print(_describe(unit, state), flush=True)
            source = _to_retrain(unit, units, state) if args.retrain_archived and status(unit, state) != "done" else None
            if source is not None:
                run = retrained_run(source)
                done = state.unit(source.key).get("retrained", {}).get("stages", {})
                print(f"# {source.key}: archived; --retrain_archived trains it again in {run.workdir}", flush=True)
                for stage in run.stages:
                    if not done.get(stage, {}).get("finished"):
                        print(runner.command_line(runner.LAUNCH, runner.launch_argv(run, args.config, extra, stage,
                                                                                   resume=stage in done)), flush=True)
            if status(unit, state) != "done":
                for line in _commands(unit, root, args.config, extra, state, args.retrain_archived):
                    print(line, flush=True)
        print(json.dumps({"study": str(state.path), "dry_run": True,
                          "units": {u.key: status(u, state) for u in units}}))
        return 0
    if state.exists and not args.resume:
        parser.error(f"{root} holds a study ({state.path}); add --resume to continue it, or use another --workdir")
    changed = [u for u in units if status(u, state) == "changed"]
    if changed and not args.rerun_changed:
        lines = "\n".join(f"  {u.key}: config {state.unit(u.key)['hash'][:12]} -> {u.hash[:12]} (changed: "
                          f"{', '.join(changed_fields(state.unit(u.key)['config'], u.config))})" for u in changed)
        parser.error(f"the config of {len(changed)} method(s) changed since they started:\n{lines}\n"
                     "rerun them from scratch with --rerun_changed, or restore their config")
    ran, skipped, imported, stopped = [], [], [], False
    with _lock(root):
        state.data.update(config=args.config, overrides=extra)
        state.save()
        for unit in changed:
            _wipe(unit, state)
        with runner.Children() as children:
            for unit in units:
                if status(unit, state) == "done":
                    print(f"# {unit.key}: done, skipped", flush=True)
                    skipped.append(unit.key)
                    continue
                if theirs is not None and unit.method is not None:
                    entry = theirs.unit(unit.key)
                    why = importable(unit, entry, _content_hash(_benchmark(root, unit.protocol)))
                    if why is None:
                        import_unit(unit, entry, source, state)
                        print(f"# {unit.key}: imported from {source}", flush=True)
                        imported.append(unit.key)
                        _write_results(root, summarize(root, everything, state))
                        continue
                    print(f"# {unit.key}: not imported from {source} ({why})", flush=True)
                    partial = theirs.data.get("partial", {}).get(unit.key)
                    if state.unit(unit.key) is None and partial_importable(
                            unit, partial, _content_hash(_benchmark(root, unit.protocol))):
                        batches = import_partial(unit, partial, source, state)
                        print(f"# {unit.key}: {batches} journaled eval batches from {source}; replayed if the stages "
                              "before retrain their checkpoints bit for bit", flush=True)
                if args.retrain_archived and not retrain_source(unit, units, state, root, args.config, extra,
                                                                children):
                    stopped = True
                    print("# stopped by SIGTERM; `--resume` continues", flush=True)
                    break
                print(f"# {unit.key}: {'continues' if status(unit, state) == 'resume' else 'starts'}", flush=True)
                if not run_unit(unit, state, root, args.config, extra, children):
                    stopped = True
                    print("# stopped by SIGTERM; `--resume` continues", flush=True)
                    break
                ran.append(unit.key)
                _write_results(root, summarize(root, everything, state))     # after every unit: commit as they finish
        summary = None
        if not stopped:                   # (when stopped, the results of the last finished unit are written)
            summary = summarize(root, everything, state)
            _write_results(root, summary)
            print(render(summary), end="")
    last = {"study": str(state.path), "stopped": stopped, "ran": ran, "skipped": skipped}
    if imported:
        last["imported"] = imported
    if summary is not None:
        last["results"] = str(root / "results.json")
        last["ndcg@10"] = {p: {m: v["ndcg@10"] for m, v in r["methods"].items()} for p, r in summary["protocols"].items()}
    print(json.dumps(last))
    return 0


if __name__ == "__main__":
    sys.exit(main())
