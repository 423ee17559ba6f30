"""Launcher runs as child processes, one stage each: what the findings runner and the study runner share.

A `Run` is one launcher workdir with its config overrides and stages; each stage is its own
``python -m r2rank_jax.launch ... STAGE`` process (`launch_argv` adds ``--resume`` to a resumable stage
of a workdir that has started, so an interrupted stage continues from its checkpoints, ledger or score
journals). A run that
starts from another run's SFT (the without-CoT ablation) gets a copy of that run's parts
(`start_from`). `Children` runs one child process at a time: a SIGTERM to this process is passed on to
the running child (a training stage checkpoints and exits) and marks the runner stopped, so the
caller stops before the next child; each child's exit status, wall and CPU seconds and peak resident
memory come from `os.wait4`, and a stage that reports ``"preempted": true`` on stdout (the launcher's
training loops, after a SIGTERM from anywhere) is reported as not finished.
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import os
import pathlib
import shlex
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Sequence

LAUNCH = "r2rank_jax.launch"
RESUMABLE: tuple[str, ...] = ("synthesize", "sft", "rl", "eval")
REUSED_FROM_MAIN: tuple[str, ...] = ("data", "teacher", "sft")
_RSS_UNIT = 1 if sys.platform == "darwin" else 1024     # ru_maxrss: bytes on macOS, KiB on Linux


def parse_args(parser: argparse.ArgumentParser, argv: Sequence[str] | None) -> tuple[argparse.Namespace, list[str]]:
    """(the parser's arguments, the ``--config.F=V`` words in order). The overrides are taken out first, as
    the launcher does (a value may hold spaces: ``--config.eval.baseline_args=sasrec --epochs 60``); any
    other unknown word is a usage error."""
    argv = list(sys.argv[1:] if argv is None else argv)
    overrides = [a for a in argv if a.startswith("--config.")]
    bad = [o for o in overrides if "=" not in o]
    if bad:
        parser.error(f"unrecognized arguments {bad} (config overrides look like --config.rl.steps=10)")
    return parser.parse_args([a for a in argv if not a.startswith("--config.")]), overrides


def command_line(module: str, argv: Sequence[str]) -> str:
    return f"python -m {module} " + " ".join(shlex.quote(a) for a in argv)


@dataclasses.dataclass(frozen=True)
class Run:
    """One launcher run: `name` in `workdir`; `stages` each get ``launch ... STAGE``. `overrides`
    (``--config.F=V``) come after the caller's, so they win; `seed`, when set, is ``--config.seed``."""

    name: str
    workdir: pathlib.Path
    overrides: tuple[str, ...]
    stages: tuple[str, ...]    # launcher stages, in order
    copy_from: pathlib.Path | None = None   # the workdir whose `reused` parts this run starts from
    seed: int | None = None
    reused: tuple[str, ...] = REUSED_FROM_MAIN

    def argv(self, config: str, extra: Sequence[str], stage: str) -> list[str]:
        seed = [] if self.seed is None else [f"--config.seed={self.seed}"]
        return [f"--config={config}", *extra, *seed, *self.overrides, f"--workdir={self.workdir}", stage]

    @property
    def done(self) -> bool:
        return (self.workdir / "eval" / "results.json").is_file()


def launch_argv(run: Run, config: str, extra: Sequence[str], stage: str, resume: bool | None = None) -> list[str]:
    """The launcher arguments of one stage; synthesize, sft, rl and eval continue from what an interrupted
    run left (``--resume``) when `resume`, or (None) once the workdir has a config.json."""
    argv = run.argv(config, extra, stage)
    if resume is None:
        resume = (run.workdir / "config.json").exists()
    if stage in RESUMABLE and resume:
        argv.insert(-1, "--resume")
    return argv


def start_from(run: Run) -> None:
    """Copies `run.copy_from`'s config.json and `run.reused` parts into the run's workdir, once (when
    the run's sft/ is not there yet)."""
    if run.copy_from is None or (run.workdir / "sft").exists():
        return
    missing = [p for p in run.reused if not (run.copy_from / p).exists()]
    if missing:
        raise FileNotFoundError(f"{run.name} starts from {run.copy_from}, which lacks {missing}")
    run.workdir.mkdir(parents=True, exist_ok=True)
    shutil.copy(run.copy_from / "config.json", run.workdir / "config.json")
    for part in run.reused:
        shutil.copytree(run.copy_from / part, run.workdir / part, dirs_exist_ok=True, symlinks=True)


@dataclasses.dataclass(frozen=True)
class Finished:
    """One child process: exit status, costs, and whether it stopped early (SIGTERM here, or a stage
    that reported ``"preempted": true``)."""

    rc: int
    wall_s: float
    cpu_s: float               # user + system seconds of the child and the processes it waited for
    peak_rss_bytes: int
    preempted: bool
    stopped: bool              # this process got SIGTERM while the child ran

    @property
    def ok(self) -> bool:
        return self.rc == 0 and not self.preempted and not self.stopped


class Children:
    """One child process at a time, with SIGTERM passed on (module docstring). Use as a context manager."""

    def __init__(self) -> None:
        self.stopped = False
        self._pid: int | None = None
        self._previous = None

    def __enter__(self) -> "Children":
        self._previous = signal.signal(signal.SIGTERM, self._on_sigterm)
        return self

    def __exit__(self, *exc) -> None:
        signal.signal(signal.SIGTERM, self._previous)

    def _on_sigterm(self, signum, frame) -> None:  # noqa: ARG002
        self.stopped = True
        self._forward()

    def _forward(self) -> None:
        if self._pid is not None:
            try:
                os.kill(self._pid, signal.SIGTERM)
            except ProcessLookupError:
                pass

    def run(self, module: str, argv: Sequence[str]) -> Finished:
        """``python -m MODULE ARGV`` to the end; its stdout is passed through line by line."""
        print(command_line(module, argv), flush=True)
        start = time.perf_counter()
        child = subprocess.Popen([sys.executable, "-m", module, *argv], stdout=subprocess.PIPE, text=True, bufsize=1)
        self._pid = child.pid
        if self.stopped:                # SIGTERM came between the previous child and this one
            self._forward()
        preempted = False
        for line in child.stdout:
            sys.stdout.write(line)
            sys.stdout.flush()
            preempted |= _reports_preempted(line)
        child.stdout.close()
        _, status, usage = os.wait4(child.pid, 0)
        self._pid = None
        rc = os.waitstatus_to_exitcode(status)
        child.returncode = rc          # reaped here: keeps Popen from waiting again
        return Finished(rc=rc, wall_s=time.perf_counter() - start, cpu_s=usage.ru_utime + usage.ru_stime,
                        peak_rss_bytes=int(usage.ru_maxrss) * _RSS_UNIT, preempted=preempted, stopped=self.stopped)


def _reports_preempted(line: str) -> bool:
    line = line.strip()
    if not (line.startswith("{") and '"preempted"' in line):
        return False
    try:
        return json.loads(line).get("preempted") is True
    except (json.JSONDecodeError, AttributeError):
        return False
