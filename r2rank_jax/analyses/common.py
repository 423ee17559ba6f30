"""What the analysis commands share: the workdir's config, scorers built from the eval stage's pieces,
records with replaced fields, and writing `<workdir>/analyses/NAME.{md,json,png}`.

A *scorer* maps records to scores `[N, K]` (row i in records[i]'s candidate order, higher = better).
Model scorers reuse the eval stage's path: `run.build.build_model`, `run.builders.restore_params`
and `run.scoring.score_split` for the pointwise methods, `run.listwise` for the listwise one.
"""
from __future__ import annotations

import argparse
import copy
import dataclasses
import json
import pathlib
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from r2rank_jax.data.benchmark import Record
from r2rank_jax.run.workdir import MissingInputError, Workdir

Scorer = Callable[[Sequence[Record]], np.ndarray]

# method name (as in the eval stage's results) -> the workdir run holding its checkpoint (None: base model)
POINTWISE_RUNS = {"r2rank": "rl", "sft_only": "sft", "zero_shot": None}
LISTWISE = "zero_shot_listwise"
MODEL_METHODS = (*POINTWISE_RUNS, LISTWISE)
MAIN_METRIC = "ndcg@10"


def parser(prog: str, doc: str) -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog=f"python -m r2rank_jax.analyses.{prog}", description=doc,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--workdir", required=True, type=pathlib.Path, help="a launcher workdir")
    p.add_argument("--out", type=pathlib.Path, default=None, help="output directory (default WORKDIR/analyses)")
    return p


def add_model_args(p: argparse.ArgumentParser, default_methods: str) -> None:
    p.add_argument("--methods", default=default_methods,
                   help=f"comma-separated, from {', '.join(MODEL_METHODS)} (default {default_methods})")
    p.add_argument("--split", default=None, help="benchmark split (default: the config's eval.split)")
    p.add_argument("--max-users", type=int, default=None,
                   help="first N users of the split (default: the config's eval.max_users; 0 = all)")
    p.add_argument("--mesh", default=None, help="e.g. data:2,fsdp:2 (default: no mesh)")


def parse_methods(text: str) -> list[str]:
    names = [m.strip() for m in text.split(",") if m.strip()]
    unknown = [m for m in names if m not in MODEL_METHODS]
    if unknown or not names:
        raise ValueError(f"--methods: unknown {unknown or text!r}; choose from {', '.join(MODEL_METHODS)}")
    return names


def load_config(wd: Workdir):
    from r2rank_jax.config import from_dict

    path = wd.root / "config.json"
    if not path.is_file():
        raise MissingInputError(f"{path} is missing: {wd.root} is not a launcher workdir (run the launcher's "
                                "`prepare` stage with this --workdir first)")
    return from_dict(json.loads(path.read_text()), where=str(path))


def output_dir(args: argparse.Namespace) -> pathlib.Path:
    out = args.out or (args.workdir / "analyses")
    out.mkdir(parents=True, exist_ok=True)
    return out


def replace_records(records: Sequence[Record], **fields: Sequence[Any]) -> list[Record]:
    """records with `field` of record i replaced by `fields[field][i]` (tuples)."""
    return [dataclasses.replace(r, **{k: tuple(v[i]) for k, v in fields.items()}) for i, r in enumerate(records)]


def with_records(source, records: Sequence[Record]):
    """A copy of a `SplitSource` serving `records` instead of its own (same items)."""
    out = copy.copy(source)
    out.records = list(records)
    return out


@dataclasses.dataclass
class ModelContext:
    """The eval stage's pieces for one workdir: config, tokenizer, prompt builder and pipeline, split."""

    cfg: Any
    wd: Workdir
    tok: Any
    builder: Any
    pipeline: Any
    source: Any               # SplitSource of `split` (its records: the first max_users users)
    mesh: Any = None

    @classmethod
    def load(cls, workdir: pathlib.Path, split: str | None = None, max_users: int | None = None, mesh: str | None = None,
             benchmark: pathlib.Path | None = None) -> "ModelContext":
        """`benchmark`: score another prepared benchmark (its items and split) with this workdir's model."""
        from r2rank_jax import distributed
        from r2rank_jax.data.pipeline import SplitSource
        from r2rank_jax.data.prompts import PromptBuilder
        from r2rank_jax.run import builders as common

        # Multi-host (the launcher's environment variables, docs/multihost.md): each process scores its
        # block of the users on a host-local mesh (`scorer`), process 0 writes the outputs.
        distributed.initialize(distributed.settings_from_env())
        wd = Workdir(pathlib.Path(workdir))
        cfg = load_config(wd)
        tok = common.tokenizer(cfg, wd, "analyses")
        builder, pipeline = common.prompts_and_pipeline(cfg, tok, wd, batch_users=cfg.eval.decode_users(cfg.rl.batch_users))
        split = split or cfg.eval.split
        if benchmark is None:
            source = common.source(wd, split)
        else:
            source = SplitSource(benchmark, split)
            builder = PromptBuilder(tok, source.items, builder.config)
        n = cfg.eval.max_users if max_users is None else max_users
        source = with_records(source, source.records[:n] if n else source.records)
        the_mesh = None
        if mesh:
            from r2rank_jax.mesh import make_mesh
            the_mesh = distributed.local_mesh(make_mesh(mesh))
        return cls(cfg, wd, tok, builder, pipeline, source, the_mesh)

    @property
    def records(self) -> list[Record]:
        return self.source.records

    def scorer(self, method: str) -> "Scorer":
        import jax

        scorer = ListwiseScorer(self) if method == LISTWISE else PointwiseScorer(self, method)
        if jax.process_count() == 1:
            return scorer
        from r2rank_jax.analyses.host_blocks import HostBlocks
        return HostBlocks(scorer)


class PointwiseScorer:
    """R2Rank-style scores (one rationale + head score per candidate) from a run's checkpoint."""

    def __init__(self, ctx: ModelContext, method: str):
        from flax import nnx

        from r2rank_jax.run import builders as common
        from r2rank_jax.run.build import build_model

        if method not in POINTWISE_RUNS:
            raise ValueError(f"not a pointwise method: {method!r} (choose from {', '.join(POINTWISE_RUNS)})")
        self.ctx, self.method = ctx, method
        model, head = build_model(ctx.cfg, ctx.tok, ctx.mesh)
        run = POINTWISE_RUNS[method]
        if run is not None:
            run_dir = getattr(ctx.wd, run)
            if common.restore_params(model, head, run_dir) is None:
                raise MissingInputError(f"method {method!r} needs a checkpoint in {run_dir / 'checkpoints'}, which "
                                        f"stage {run!r} writes")
        self.sampler = common.sampler(model, ctx.tok, ctx.cfg, ctx.cfg.eval.max_new_tokens)
        self.head_def, self.head_state = nnx.split(head)

    def __call__(self, records: Sequence[Record]) -> np.ndarray:
        from r2rank_jax.run.scoring import score_split

        out = score_split(self.sampler, None, self.head_def, self.head_state, with_records(self.ctx.source, records),
                          self.ctx.builder, self.ctx.pipeline, max_users=len(records))
        if out.user_ids != [r.user_id for r in records]:
            raise RuntimeError("scored users differ from the records (pipeline order changed?)")
        return out.scores.astype(np.float64)


class ListwiseScorer:
    """The zero-shot listwise baseline (base model); `last_stats` holds the parse statistics of the last call."""

    def __init__(self, ctx: ModelContext):
        from r2rank_jax.run.listwise import listwise_setup

        self.ctx = ctx
        k = max(len(r.candidates) for r in ctx.records)
        self.setup = listwise_setup(ctx.cfg, ctx.tok, k, ctx.mesh)
        self.last_stats: dict | None = None

    def __call__(self, records: Sequence[Record]) -> np.ndarray:
        from r2rank_jax.run.listwise import listwise_scores

        out = listwise_scores(self.setup, records, self.ctx.builder)
        self.last_stats = out.stats.as_dict()
        return out.scores


def write_outputs(out_dir: pathlib.Path, name: str, payload: dict, markdown: str, figure) -> dict[str, pathlib.Path]:
    """Writes OUT/NAME.json, NAME.md and NAME.png (then closes the figure); returns the paths (multi-host:
    process 0 alone writes, the others return {})."""
    import matplotlib.pyplot as plt

    from r2rank_jax import distributed

    if not distributed.is_primary():
        plt.close(figure)
        return {}

    paths = {"json": out_dir / f"{name}.json", "md": out_dir / f"{name}.md", "png": out_dir / f"{name}.png"}
    paths["json"].write_text(json.dumps(payload, indent=2, ensure_ascii=False, default=_jsonable) + "\n")
    paths["md"].write_text(markdown)
    figure.savefig(paths["png"], dpi=120, bbox_inches="tight")
    plt.close(figure)
    print(markdown, end="")
    print(json.dumps({"analysis": name, **{k: str(v) for k, v in paths.items()}}))
    return paths


def _jsonable(x: Any) -> Any:
    if isinstance(x, np.generic):
        return x.item()
    if isinstance(x, np.ndarray):
        return x.tolist()
    raise TypeError(f"not JSON serializable: {type(x).__name__}")


def figure(ncols: int = 1, width: float = 5.5, height: float = 3.8):
    """A matplotlib figure on the non-interactive Agg backend."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt.subplots(1, ncols, figsize=(width * ncols, height), squeeze=False)


def fmt(x: float | None, digits: int = 4) -> str:
    return "n/a" if x is None or (isinstance(x, float) and not np.isfinite(x)) else f"{x:.{digits}f}"
