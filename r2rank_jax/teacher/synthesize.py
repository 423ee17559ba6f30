"""Teacher rationale synthesis: ask a teacher about train-split (user, candidate) pairs, keep the
responses whose decision matches the label (the paper's filter), write a JSONL corpus.

    python -m r2rank_jax.teacher.synthesize --benchmark DIR --out CORPUS_DIR --teacher {openai,local,scripted,grounded}
        [--negatives_per_user 1] [--max_users N] [--max_attempts 1] [--rationalize | --no_rationalize]
        [--tokenizer DIR] [openai: --base_url URL --model NAME --api_key_env OPENAI_API_KEY --concurrency 4 ...]
        [local: --hf_dir DIR | --gguf FILE | --synthetic_tiny] [scripted: --noise 0.1]
        [grounded: --grounded_threshold T]

Corpus line (``CORPUS_DIR/corpus.jsonl``, read by `train.sft_data`)::

    {"user_id", "candidate", "label": 1|0, "prompt": <the self-reflective prompt rendered with the
     student tokenizer's chat template, ending with the assistant header>, "user_message": <the plain
     user message>, "response": <the full teacher response>, "teacher", "attempt"[, "reasoning"]}

The teacher is sent ``user_message`` (plus, with ``--rationalize``, the answer-conditioned hint of
`teacher.prompts`, which never enters the corpus). ``done.jsonl`` and ``stats.json``: see `ledger`.
Rerunning with the same ``--out`` skips finished pairs (accepted, or ``max_attempts`` wrong answers);
pairs whose requests failed (network, HTTP, malformed replies) are asked again.
"""
from __future__ import annotations

import argparse
import dataclasses
import itertools
import json
import logging
import os
import sys
import time
from collections import Counter
from collections.abc import Sequence
from typing import Any

from r2rank_jax import progress
from r2rank_jax.data.answers import parse_decision
from r2rank_jax.data.benchmark import Record, load_items, load_split
from r2rank_jax.data.prompt_text import NOT_RECOMMEND, RECOMMEND
from r2rank_jax.data.prompts import PromptBuilder, PromptConfig
from r2rank_jax.teacher.base import Pair, Teacher, TeacherReply, TeacherRequest
from r2rank_jax.teacher.factory import TEACHERS, TeacherSpec, default_tokenizer_dir, make_teacher
from r2rank_jax.teacher.ledger import RunDirectory, compute_stats
from r2rank_jax.teacher.pairs import iter_pairs
from r2rank_jax.teacher.prompts import leaks_hint, rationalization_message

log = logging.getLogger("r2rank_jax.teacher")
RESPONSE_TAIL_CHARS = 200


@dataclasses.dataclass(frozen=True)
class SynthesisConfig:
    split: str = "train"
    negatives_per_user: int = 1
    max_users: int | None = None
    seed: int = 0                 # negative choice
    max_attempts: int = 1         # answers per pair before giving up (more only help a sampling teacher)
    rationalize: bool = False     # append the answer-conditioned hint to what the teacher is sent
    keep_reasoning: bool = False  # store a separate reasoning field (reasoning_content) in the corpus
    chunk_pairs: int = 256        # pairs handed to the teacher at a time

    def __post_init__(self) -> None:
        if self.max_attempts < 1:
            raise ValueError(f"max_attempts must be >= 1, got {self.max_attempts}")
        if self.chunk_pairs < 1:
            raise ValueError(f"chunk_pairs must be >= 1, got {self.chunk_pairs}")


def expected_decision(label: int) -> str:
    return RECOMMEND if label else NOT_RECOMMEND


def teacher_message(pair: Pair, rationalize: bool) -> str:
    return rationalization_message(pair.user_message, expected_decision(pair.label)) if rationalize else pair.user_message


def judge(reply: TeacherReply, rationalize: bool) -> tuple[str, str | None]:
    """(outcome, parsed decision) of one reply (outcomes: `ledger.OUTCOMES`)."""
    if reply.text is None:
        return "failed", None
    decision = parse_decision(reply.text)
    if decision is None:
        return "parse_failure", None
    if decision != expected_decision(reply.request.pair.label):
        return "rejected", decision
    if rationalize and leaks_hint(reply.text):
        return "leak", decision
    return "accepted", decision


def _entries(reply: TeacherReply, teacher: str, config: SynthesisConfig) -> tuple[dict[str, Any], dict[str, Any] | None]:
    pair, attempt = reply.request.pair, reply.request.attempt
    outcome, decision = judge(reply, config.rationalize)
    entry = {"user_id": pair.record.user_id, "candidate": pair.candidate, "label": pair.label, "attempt": attempt,
             "outcome": outcome, "failure": reply.failure, "decision": decision, "requests": reply.requests,
             "attempt_errors": list(reply.attempt_errors), "error": reply.error}
    if outcome != "accepted":
        if reply.text is not None:  # enough to see why it was rejected, without a second corpus
            entry["response_tail"] = reply.text[-RESPONSE_TAIL_CHARS:]
        return entry, None
    line = {"user_id": pair.record.user_id, "candidate": pair.candidate, "label": pair.label, "prompt": pair.prompt,
            "user_message": pair.user_message, "response": reply.text, "teacher": teacher, "attempt": attempt}
    if config.keep_reasoning and reply.reasoning:
        line["reasoning"] = reply.reasoning
    return entry, line


def synthesize(teacher: Teacher, builder: PromptBuilder, records: Sequence[Record], out_dir: str | os.PathLike[str],
               config: SynthesisConfig = SynthesisConfig()) -> dict[str, Any]:
    """Runs (or resumes) synthesis into ``out_dir``; returns the stats written to ``stats.json``."""
    run = RunDirectory(out_dir)
    counts: Counter[str] = Counter()
    start = time.time()
    pairs = iter_pairs(builder, records, config.negatives_per_user, config.seed, config.max_users)
    users = min(len(records), config.max_users) if config.max_users else len(records)
    bar = progress.bar(users * (1 + config.negatives_per_user), "synthesis", unit="pair")   # about: 1 + negatives
    try:
        while chunk := list(itertools.islice(pairs, config.chunk_pairs)):
            counts["pairs"] += len(chunk)
            pending = [p for p in chunk if not run.is_done(p.key, config.max_attempts)]
            counts["skipped"] += len(chunk) - len(pending)
            while pending:
                requests = [TeacherRequest(p, teacher_message(p, config.rationalize), run.next_attempt(p.key))
                            for p in pending]
                again = []
                for reply in teacher.respond(requests):
                    entry, line = _entries(reply, teacher.name, config)
                    run.record(entry, line)
                    counts["requests"] += reply.requests
                    counts[entry["outcome"]] += 1
                    if entry["outcome"] != "failed" and not run.is_done(reply.request.pair.key, config.max_attempts):
                        again.append(reply.request.pair)
                pending = again
            bar.update(len(chunk))
            log.info("synthesis: %d pairs seen (%d skipped), %d requests, %d accepted, %d failed",
                     counts["pairs"], counts["skipped"], counts["requests"], counts["accepted"], counts["failed"])
    finally:
        bar.close()
        run.close()
        stats = {**compute_stats(run.entries), "teacher": teacher.name, "config": dataclasses.asdict(config),
                 "run": {**{k: counts.get(k, 0) for k in ("pairs", "skipped", "requests", "accepted", "rejected",
                                                          "parse_failure", "leak", "failed")},
                         "seconds": round(time.time() - start, 2)}}
        run.write_stats(stats)
    return stats


def synthesize_benchmark(benchmark_dir: str | os.PathLike[str], out_dir: str | os.PathLike[str], spec: TeacherSpec,
                         config: SynthesisConfig = SynthesisConfig(), *, tokenizer: Any = None,
                         tokenizer_dir: str | None = None, prompt_config: PromptConfig = PromptConfig()) -> dict[str, Any]:
    """Builds the teacher and the prompt builder, then `synthesize`. The student tokenizer (its chat
    template renders the corpus prompts) is ``tokenizer``, else loaded from ``tokenizer_dir``, else the
    local teacher's, else ``BENCH/../tokenizer``."""
    from transformers import AutoTokenizer

    if tokenizer is None and tokenizer_dir:
        tokenizer = AutoTokenizer.from_pretrained(tokenizer_dir)
    teacher, teacher_tokenizer = make_teacher(spec, benchmark_dir, tokenizer)
    try:
        if tokenizer is None:
            tokenizer = teacher_tokenizer
        if tokenizer is None and (found := default_tokenizer_dir(benchmark_dir)) is not None:
            tokenizer = AutoTokenizer.from_pretrained(found)
        if tokenizer is None:
            raise ValueError("no tokenizer for the corpus prompts: pass --tokenizer DIR (the student model's "
                             "tokenizer; its chat template renders the prompts)")
        builder = PromptBuilder(tokenizer, load_items(benchmark_dir), prompt_config)
        return synthesize(teacher, builder, load_split(benchmark_dir, config.split), out_dir, config)
    finally:
        teacher.close()


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m r2rank_jax.teacher.synthesize", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--benchmark", required=True, help="prepared benchmark directory")
    p.add_argument("--out", required=True, help="corpus directory (created; reruns resume)")
    p.add_argument("--teacher", required=True, choices=TEACHERS)
    p.add_argument("--tokenizer", default=None, help="student tokenizer directory (renders the corpus prompts)")
    p.add_argument("--max_prompt_tokens", type=int, default=None)
    c = SynthesisConfig()
    p.add_argument("--split", default=c.split)
    p.add_argument("--negatives_per_user", type=int, default=c.negatives_per_user)
    p.add_argument("--max_users", type=int, default=None)
    p.add_argument("--seed", type=int, default=c.seed)
    p.add_argument("--max_attempts", type=int, default=c.max_attempts)
    p.add_argument("--rationalize", action=argparse.BooleanOptionalAction, default=None,
                   help="answer-conditioned hint (default: on for --teacher local, off otherwise)")
    p.add_argument("--keep_reasoning", action="store_true")
    s = TeacherSpec()
    for name in ("base_url", "model", "api_key_env", "concurrency", "timeout", "max_http_attempts", "backoff",
                 "max_backoff", "max_tokens", "temperature", "hf_dir", "gguf", "max_new_tokens", "batch_size",
                 "dtype", "noise", "threshold", "style"):
        default = getattr(s, name)
        kind = float if name == "temperature" else type(default) if default is not None else str
        p.add_argument(f"--{name}", type=kind, default=default)
    p.add_argument("--grounded_threshold", type=float, default=None,
                   help="grounded teacher: decision threshold of the match score (default: the fitted one)")
    p.add_argument("--synthetic_tiny", action="store_true", help="local teacher: a random tiny model (tests)")
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    spec_fields = {f.name for f in dataclasses.fields(TeacherSpec)} - {"kind", "seed"}
    try:
        spec = TeacherSpec(kind=args.teacher, seed=args.seed, **{k: getattr(args, k) for k in spec_fields})
        rationalize = args.teacher == "local" if args.rationalize is None else args.rationalize
        config = SynthesisConfig(split=args.split, negatives_per_user=args.negatives_per_user, max_users=args.max_users,
                                 seed=args.seed, max_attempts=args.max_attempts, rationalize=rationalize,
                                 keep_reasoning=args.keep_reasoning)
        stats = synthesize_benchmark(args.benchmark, args.out, spec, config, tokenizer_dir=args.tokenizer,
                                     prompt_config=PromptConfig(max_prompt_tokens=args.max_prompt_tokens))
    except (ValueError, OSError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    summary = {k: stats[k] for k in ("requests", "answered", "accepted", "acceptance_rate", "failures_by_kind", "run")}
    print(json.dumps(summary))
    return 0


if __name__ == "__main__":
    sys.exit(main())
