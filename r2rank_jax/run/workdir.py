"""Where each stage reads and writes inside WORKDIR, and the check that a stage's inputs exist."""
from __future__ import annotations

import dataclasses
import pathlib


class MissingInputError(FileNotFoundError):
    """A stage whose inputs (the outputs of an earlier stage) are not in the workdir."""


@dataclasses.dataclass(frozen=True)
class Workdir:
    root: pathlib.Path

    @property
    def data(self) -> pathlib.Path:          # prepare: synthetic world / prepared benchmark / tokenizer
        return self.root / "data"

    @property
    def benchmark(self) -> pathlib.Path:
        return self.data / "benchmark"

    @property
    def tokenizer(self) -> pathlib.Path:
        return self.data / "tokenizer"

    @property
    def teacher(self) -> pathlib.Path:       # synthesize: the filtered rationale corpus
        return self.root / "teacher"

    @property
    def sft(self) -> pathlib.Path:
        return self.root / "sft"

    @property
    def rl(self) -> pathlib.Path:
        return self.root / "rl"

    @property
    def eval(self) -> pathlib.Path:
        return self.root / "eval"

    @property
    def metrics(self) -> pathlib.Path:
        return self.root / "metrics.jsonl"

    def require(self, path: pathlib.Path, stage: str, produced_by: str) -> pathlib.Path:
        if not path.exists():
            raise MissingInputError(f"stage {stage!r} needs {path}, which stage {produced_by!r} writes; "
                                    f"run `... {produced_by}` (or `all`) with this --workdir first")
        return path
