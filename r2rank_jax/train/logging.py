"""Training-stage logs: `WORKDIR/metrics.jsonl`, TensorBoard event files and a tqdm progress bar.

    logger = MetricsLogger(workdir, stage="sft", total_steps=1000, initial_step=restored_step)
    logger.log(step, {"loss": 2.3, "lr": 1e-5})      # one JSON line + one scalar per metric
    logger.advance(step)                             # moves the progress bar (every step)
    logger.close()

In a multi-host run only process 0 writes (`primary`). Each `log` call appends one JSON object ``{"stage", "step", "time", <metrics>...}`` and flushes, so
the file survives a preemption. A resumed run appends to the same file; if a run died hard after
its last checkpoint, steps after that checkpoint appear twice and the later lines win. TensorBoard
tags are ``"{stage}/{name}"`` in ``WORKDIR/tensorboard``.
"""
from __future__ import annotations

import json
import math
import os
import pathlib
import sys
import time
from collections.abc import Mapping
from typing import Any

import numpy as np

METRICS_FILE = "metrics.jsonl"
TENSORBOARD_DIR = "tensorboard"


def to_python(value: Any) -> Any:
    """A JSON-friendly scalar from a Python/NumPy/JAX scalar (non-finite floats become strings)."""
    if isinstance(value, (str, bool)) or value is None:
        return value
    arr = np.asarray(value)
    if arr.ndim:
        raise ValueError(f"metric values must be scalars, got shape {arr.shape}")
    item = arr.item()
    if isinstance(item, float) and not math.isfinite(item):
        return str(item)
    return item


class MetricsLogger:
    """Writes one stage's metrics (see module docstring). Use as a context manager or call `close`."""

    def __init__(self, workdir: str | os.PathLike[str], stage: str, total_steps: int | None = None,
                 initial_step: int = 0, tensorboard: bool = True, progress: bool = True, primary: bool | None = None):
        import jax

        self.workdir = pathlib.Path(workdir)
        self.stage = stage
        self.path = self.workdir / METRICS_FILE
        # Multi-host: only process 0 writes (the others would append the same records to a shared file).
        self.primary = jax.process_index() == 0 if primary is None else primary
        if not self.primary:
            tensorboard = progress = False
        else:
            self.workdir.mkdir(parents=True, exist_ok=True)
        self._file = open(self.path if self.primary else os.devnull, "a", encoding="utf-8")
        self._writer = None
        if tensorboard:
            from tensorboardX import SummaryWriter

            self._writer = SummaryWriter(logdir=str(self.workdir / TENSORBOARD_DIR), flush_secs=10)
        self._bar = None
        if progress:
            from tqdm.auto import tqdm

            self._bar = tqdm(total=total_steps, initial=initial_step, desc=stage, dynamic_ncols=True,
                             file=sys.stderr, disable=None)
        self._shown = initial_step

    def log(self, step: int, metrics: Mapping[str, Any], stage: str | None = None) -> dict[str, Any]:
        """Appends one record for ``step`` (``stage`` defaults to the logger's); returns it."""
        stage = self.stage if stage is None else stage
        record = {"stage": stage, "step": int(step), "time": round(time.time(), 3)}
        record.update({k: to_python(v) for k, v in metrics.items()})
        self._file.write(json.dumps(record) + "\n")
        self._file.flush()
        if self._writer is not None:
            for name, value in record.items():
                if name not in ("stage", "step", "time") and isinstance(value, (int, float)) and not isinstance(value, bool):
                    self._writer.add_scalar(f"{stage}/{name}", value, int(step))
        if self._bar is not None:
            shown = {k: record[k] for k in ("loss", "lr", "tokens_per_s") if isinstance(record.get(k), float)}
            if shown and stage == self.stage:
                self._bar.set_postfix({k: f"{v:.4g}" for k, v in shown.items()}, refresh=False)
        return record

    def advance(self, step: int) -> None:
        """Moves the progress bar to ``step``."""
        if self._bar is not None and step > self._shown:
            self._bar.update(step - self._shown)
            self._shown = step

    def write(self, message: str) -> None:
        """A message that does not break the progress bar."""
        if self._bar is not None:
            self._bar.write(message, file=sys.stderr)
        else:
            print(message, file=sys.stderr)

    def close(self) -> None:
        if self._bar is not None:
            self._bar.close()
            self._bar = None
        if self._writer is not None:
            self._writer.close()
            self._writer = None
        if not self._file.closed:
            self._file.close()

    def __enter__(self) -> "MetricsLogger":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def read_metrics(workdir: str | os.PathLike[str], stage: str | None = None) -> list[dict[str, Any]]:
    """The records of ``WORKDIR/metrics.jsonl`` (optionally of one stage), later duplicates of a
    (stage, step) replacing earlier ones, in step order."""
    path = pathlib.Path(workdir) / METRICS_FILE
    by_key: dict[tuple[str, int], dict[str, Any]] = {}
    with open(path, encoding="utf-8") as f:
        for lineno, line in enumerate(f, start=1):
            if not line.strip():
                continue
            try:
                record = json.loads(line)
            except json.JSONDecodeError as e:
                raise ValueError(f"{path}:{lineno}: invalid JSON ({e.msg})") from None
            if stage is None or record.get("stage") == stage:
                by_key[(record["stage"], record["step"])] = record
    return sorted(by_key.values(), key=lambda r: (r["step"], r["stage"]))
