"""Orbax checkpoints of a `TrainState` plus the Grain iterator state and a self-describing metadata record.

    ckpt = Checkpointer(CheckpointConfig(directory=WORKDIR / "checkpoints", keep_last=3,
                                         best_metric="eval_loss", best_mode="min"),
                        metadata=train_metadata(model.config, head))
    ckpt.save(step, state, data_iter, metrics={"eval_loss": 1.7})   # metrics only on eval steps
    state = ckpt.restore(abstract_like(fresh_state_on_the_new_mesh), data_iter=it)   # latest step

Layout of one step directory ``DIR/<step>/`` (Orbax `CheckpointManager`, one item per subdirectory):

- ``params``: ``{"llm": θ, "head": φ}`` (what export needs; restorable on its own);
- ``train``: ``{"step", "key", "llm_opt", "head_opt"}``;
- ``data``: the Grain iterator state (one JSON file per process; absent when no iterator was given);
- ``meta``: JSON ``{"format", "model_config": ModelConfig fields, "head_config": {...}, ...}``, so a
  checkpoint alone rebuilds the model (`tools/export_checkpoint`).

Retention: the last ``keep_last`` steps, plus the ``keep_best`` best by ``best_metric`` among steps
saved with metrics. Atomicity is Orbax's: a step is written into ``<step>.orbax-checkpoint-tmp-*``
and renamed when every item is complete, so a crash mid-save never becomes the latest step (the
tmp directory is ignored, and removed when a manager is next opened). Restores go onto the
shardings of the given abstract state, so a checkpoint saved on one mesh restores onto another.
Shape, dtype, tree and model-config mismatches and missing items raise `CheckpointError` naming the
step directory and the offending entries.
"""
from __future__ import annotations

import dataclasses
import hashlib
import os
import pathlib
from collections.abc import Mapping
from typing import Any

import grain
import jax
import numpy as np
import orbax.checkpoint as ocp
from jax.sharding import Mesh, NamedSharding, PartitionSpec as P, SingleDeviceSharding

from r2rank_jax.mesh import path_str, spec_for
from r2rank_jax.models.config import LoRAConfig, ModelConfig, RopeScaling
from r2rank_jax.models.safetensors_io import CheckpointError
from r2rank_jax.train.state import TrainState

FORMAT = "r2rank_jax.train_checkpoint.v1"
ITEMS = ("params", "train", "data", "meta")
_IGNORED_CONFIG_FIELDS = ("remat",)  # may change between runs without changing any saved value


@dataclasses.dataclass(frozen=True)
class CheckpointConfig:
    directory: str
    keep_last: int = 3
    best_metric: str | None = None  # a key of the metrics passed to `save`, e.g. "eval_loss"
    best_mode: str = "min"          # "min" or "max"
    keep_best: int = 1
    async_save: bool = True         # write in a background thread after the device-to-host copy

    def __post_init__(self) -> None:
        if self.keep_last < 1:
            raise ValueError(f"CheckpointConfig.keep_last must be >= 1, got {self.keep_last}")
        if self.best_mode not in ("min", "max"):
            raise ValueError(f"CheckpointConfig.best_mode={self.best_mode!r}: expected 'min' or 'max'")


# ---- self-describing metadata --------------------------------------------------------------------

def model_config_to_json(cfg: ModelConfig) -> dict[str, Any]:
    """The config's fields as JSON; `lora` only when adapters are on (so LoRA-free metadata is unchanged)."""
    out = dataclasses.asdict(cfg)
    if isinstance(out.get("eos_token_id"), tuple):
        out["eos_token_id"] = list(out["eos_token_id"])
    if cfg.lora.enabled:
        out["lora"]["targets"] = list(cfg.lora.targets)
    else:
        del out["lora"]
    return out


def model_config_from_json(obj: Mapping[str, Any], source: str = "checkpoint metadata") -> ModelConfig:
    obj = dict(obj)
    known = {f.name for f in dataclasses.fields(ModelConfig)}
    unknown = sorted(set(obj) - known)
    if unknown:
        raise CheckpointError(f"{source}: unknown model_config field(s) {unknown}")
    if isinstance(obj.get("rope_scaling"), Mapping):
        obj["rope_scaling"] = RopeScaling(**obj["rope_scaling"])
    if isinstance(obj.get("eos_token_id"), list):
        obj["eos_token_id"] = tuple(obj["eos_token_id"])
    if isinstance(obj.get("lora"), Mapping):
        lora = dict(obj["lora"])
        unknown_lora = sorted(set(lora) - {f.name for f in dataclasses.fields(LoRAConfig)})
        if unknown_lora:
            raise CheckpointError(f"{source}: unknown model_config.lora field(s) {unknown_lora}")
        lora["targets"] = tuple(lora.get("targets", LoRAConfig().targets))
        try:
            obj["lora"] = LoRAConfig(**lora)
        except (TypeError, ValueError) as e:
            raise CheckpointError(f"{source}: invalid model_config.lora: {e}") from None
    try:
        return ModelConfig(**obj)
    except (TypeError, ValueError) as e:
        raise CheckpointError(f"{source}: invalid model_config: {e}") from None


def head_config(head: Any) -> dict[str, Any]:
    """{"hidden_size", "head_hidden", "param_dtype"} of a `ScoringHead` (its constructor arguments)."""
    d, hidden = head.w1.shape
    return {"hidden_size": int(d), "head_hidden": int(hidden), "param_dtype": str(np.dtype(head.w1[...].dtype))}


def train_metadata(model_config: ModelConfig, head: Any = None, **extra: Any) -> dict[str, Any]:
    """The ``meta`` item: format, model config, head config and any JSON-serializable extras."""
    meta: dict[str, Any] = {"format": FORMAT, "model_config": model_config_to_json(model_config)}
    if head is not None:
        meta["head_config"] = head_config(head)
    meta.update(extra)
    return meta


# ---- abstract states (restore targets) -----------------------------------------------------------

def abstract_like(tree: Any) -> Any:
    """ShapeDtypeStructs with the shape, dtype and sharding of every array of ``tree``."""
    return jax.tree.map(lambda x: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=x.sharding), tree)


def with_rule_shardings(tree: Any, mesh: Mesh | None, prefix: str = "") -> Any:
    """ShapeDtypeStructs of ``tree`` placed by the partition rules (scalars replicated); one device
    when ``mesh`` is None. For restore targets built without materializing the model."""
    def one(path, leaf):
        if mesh is None:
            sharding = SingleDeviceSharding(jax.devices()[0])
        elif not leaf.shape:
            sharding = NamedSharding(mesh, P())
        else:
            name = (prefix + "/" if prefix else "") + path_str(path)
            sharding = NamedSharding(mesh, spec_for(name, tuple(leaf.shape), mesh))
        return jax.ShapeDtypeStruct(leaf.shape, leaf.dtype, sharding=sharding)
    return jax.tree_util.tree_map_with_path(one, tree)


def _split_state(state: TrainState) -> tuple[dict[str, Any], dict[str, Any]]:
    if jax.dtypes.issubdtype(state.key.dtype, jax.dtypes.prng_key):
        raise CheckpointError("TrainState.key must be a raw uint32 key (jax.random.PRNGKey), not a typed key")
    return ({"llm": state.llm, "head": state.head},
            {"step": state.step, "key": state.key, "llm_opt": state.llm_opt, "head_opt": state.head_opt})


# ---- structure checks ----------------------------------------------------------------------------

def _leaf_table(tree: Any) -> dict[str, tuple[tuple[int, ...], str]]:
    def key(path) -> str:
        parts = [str(getattr(p, "key", getattr(p, "name", getattr(p, "idx", p)))) for p in path]
        return "/".join(p for p in parts if p != "value")
    leaves = jax.tree_util.tree_flatten_with_path(tree)[0]
    return {key(p): (tuple(x.shape), str(np.dtype(x.dtype))) for p, x in leaves}


def compare_trees(saved: Any, target: Any, what: str) -> list[str]:
    """Human-readable differences (missing/unexpected entries, shape/dtype changes) between trees."""
    a, b = _leaf_table(saved), _leaf_table(target)
    problems = [f"{what}/{k}: missing from the checkpoint (expected {b[k][0]} {b[k][1]})" for k in sorted(set(b) - set(a))]
    problems += [f"{what}/{k}: in the checkpoint but not in the model" for k in sorted(set(a) - set(b))]
    problems += [f"{what}/{k}: checkpoint has {a[k][0]} {a[k][1]}, model expects {b[k][0]} {b[k][1]}"
                 for k in sorted(set(a) & set(b)) if a[k] != b[k]]
    return problems


def compare_model_configs(saved: Mapping[str, Any], current: Mapping[str, Any]) -> list[str]:
    keys = sorted((set(saved) | set(current)) - set(_IGNORED_CONFIG_FIELDS))
    return [f"model_config.{k}: checkpoint {saved.get(k)!r}, current {current.get(k)!r}"
            for k in keys if saved.get(k) != current.get(k)]


# ---- the manager ---------------------------------------------------------------------------------

class Checkpointer:
    """Saves and restores train states (module docstring). Close it (or use `with`) to finish writes."""

    def __init__(self, config: CheckpointConfig, metadata: Mapping[str, Any] | None = None):
        self.config = config
        self.metadata = dict(metadata or {"format": FORMAT})
        self.metadata["retention"] = {"best_metric": config.best_metric, "best_mode": config.best_mode}
        self.directory = pathlib.Path(config.directory).absolute()
        policies: list[Any] = [ocp.checkpoint_managers.LatestN(n=config.keep_last)]
        best_fn = None
        if config.best_metric is not None:
            metric = config.best_metric
            best_fn = lambda m: float(m[metric])  # noqa: E731
            policies.append(ocp.checkpoint_managers.BestN(
                get_metric_fn=best_fn, reverse=config.best_mode == "min", n=config.keep_best,
                keep_checkpoints_without_metrics=False))
        options = ocp.CheckpointManagerOptions(
            best_fn=best_fn, best_mode=config.best_mode,
            preservation_policy=ocp.checkpoint_managers.AnyPreservationPolicy(policies),
            enable_async_checkpointing=config.async_save, cleanup_tmp_directories=True, create=True)
        handlers = {"params": ocp.handlers.StandardCheckpointHandler(), "train": ocp.handlers.StandardCheckpointHandler(),
                    "data": grain.checkpoint.CheckpointHandler(), "meta": ocp.handlers.JsonCheckpointHandler()}
        self.manager = ocp.CheckpointManager(self.directory, item_handlers=handlers, options=options)

    @classmethod
    def reopen(cls, directory: str | pathlib.Path) -> "Checkpointer":
        """An existing run's checkpointer with the retention it was written with (its best metric and
        mode, from the latest checkpoint's metadata), so that `best_step` answers. For reading only."""
        probe = cls(CheckpointConfig(str(directory)))
        latest = probe.latest_step()
        retention = (probe.read_metadata(latest).get("retention") or {}) if latest is not None else {}
        if not retention.get("best_metric"):
            return probe
        probe.close()
        return cls(CheckpointConfig(str(directory), best_metric=retention["best_metric"],
                                    best_mode=retention.get("best_mode", "min")))

    # -- queries
    def latest_step(self) -> int | None:
        return self.manager.latest_step()

    def best_step(self) -> int | None:
        return self.manager.best_step() if self.config.best_metric else None

    def all_steps(self) -> list[int]:
        return list(self.manager.all_steps())

    def step_dir(self, step: int) -> pathlib.Path:
        return self.directory / str(step)

    # -- save
    def save(self, step: int, state: TrainState, data_iter: grain.DatasetIterator | None = None,
             metrics: Mapping[str, Any] | None = None, force: bool = True) -> bool:
        """Writes ``state`` (and the iterator's position) as ``step``; returns whether it was written
        (False when that step already exists)."""
        if step in self.manager.all_steps():
            return False
        params, train = _split_state(state)
        args = {"params": ocp.args.StandardSave(params), "train": ocp.args.StandardSave(train),
                "meta": ocp.args.JsonSave(self.metadata)}
        if data_iter is not None:
            args["data"] = grain.checkpoint.CheckpointSave(data_iter)
        if metrics is not None:
            if self.config.best_metric is not None and self.config.best_metric not in metrics:
                raise KeyError(f"best_metric {self.config.best_metric!r} is not among the metrics {sorted(metrics)}")
            metrics = {k: float(v) for k, v in metrics.items()}
        return self.manager.save(step, args=ocp.args.Composite(**args), metrics=metrics, force=force)

    def wait(self) -> None:
        """Blocks until background writes have finished (call before exiting)."""
        self.manager.wait_until_finished()

    # -- restore
    def read_metadata(self, step: int | None = None) -> dict[str, Any]:
        step = self._resolve(step)
        self._require_items(step, ("meta",))
        try:
            meta = self.manager.restore(step, args=ocp.args.Composite(meta=ocp.args.JsonRestore()))["meta"]
        except Exception as e:  # noqa: BLE001 - any reader failure means a corrupt item
            raise CheckpointError(f"{self.step_dir(step)}/meta: unreadable metadata ({type(e).__name__}: {e})") from e
        if not isinstance(meta, dict) or meta.get("format") != FORMAT:
            raise CheckpointError(f"{self.step_dir(step)}/meta: not a {FORMAT} checkpoint (format="
                                  f"{meta.get('format') if isinstance(meta, dict) else meta!r})")
        return meta

    def restore_params(self, abstract_params: Mapping[str, Any], step: int | None = None) -> dict[str, Any]:
        """Only ``{"llm", "head"}`` (export, evaluation), onto the shardings of ``abstract_params``."""
        step = self._resolve(step)
        self._check(step, {"params": abstract_params})
        return self._restore(step, params=ocp.args.StandardRestore(abstract_params))["params"]

    def params_digest(self, step: int | None = None) -> str:
        """sha256 of ``step``'s ``{"llm", "head"}`` (default: latest): every leaf's path, dtype, shape and
        bytes, restored onto the host CPU. Two checkpoints have the same digest exactly when their
        parameters are bitwise equal, whatever their files' names and times or the mesh that saved them
        (a run retrained on a machine with the same float rounding: `stages.evaluate`'s score journals)."""
        step = self._resolve(step)
        self._require_items(step, ("params",))
        try:
            saved = self.manager.item_metadata(step)["params"]
        except Exception as e:  # noqa: BLE001
            raise CheckpointError(f"{self.step_dir(step)}: unreadable item metadata ({type(e).__name__}: {e})") from e
        host = SingleDeviceSharding(jax.local_devices(backend="cpu")[0])
        target = jax.tree.map(lambda m: jax.ShapeDtypeStruct(tuple(m.shape), m.dtype, sharding=host), saved)
        params = self._restore(step, params=ocp.args.StandardRestore(target))["params"]
        digest = hashlib.sha256()
        for path, leaf in sorted(jax.tree_util.tree_flatten_with_path(params)[0], key=lambda kv: jax.tree_util.keystr(kv[0])):
            arr = np.asarray(leaf)
            digest.update(f"{jax.tree_util.keystr(path)}:{arr.dtype}:{arr.shape}\n".encode())
            digest.update(np.ascontiguousarray(arr).tobytes())
        return digest.hexdigest()

    def restore(self, abstract_state: TrainState, step: int | None = None,
                data_iter: grain.DatasetIterator | None = None) -> TrainState:
        """The state of ``step`` (default: latest) on ``abstract_state``'s shardings; ``data_iter`` is
        moved to the saved position in place."""
        step = self._resolve(step)
        params, train = _split_state(abstract_state)
        self._check(step, {"params": params, "train": train}, need_data=data_iter is not None)
        args = {"params": ocp.args.StandardRestore(params), "train": ocp.args.StandardRestore(train)}
        if data_iter is not None:
            args["data"] = grain.checkpoint.CheckpointRestore(data_iter)
        out = self._restore(step, **args)
        p, t = out["params"], out["train"]
        return TrainState(step=t["step"], llm=p["llm"], head=p["head"], llm_opt=t["llm_opt"],
                          head_opt=t["head_opt"], key=t["key"])

    def _resolve(self, step: int | None) -> int:
        self.manager.reload()
        steps = self.manager.all_steps()
        if step is None:
            if not steps:
                raise CheckpointError(f"{self.directory}: no finished checkpoint to restore")
            return max(steps)
        if step not in steps:
            raise CheckpointError(f"{self.directory}: no finished checkpoint for step {step} (have {sorted(steps)})")
        return step

    def _require_items(self, step: int, items: tuple[str, ...]) -> None:
        missing = [i for i in items if not (self.step_dir(step) / i).is_dir()]
        if missing:
            raise CheckpointError(f"{self.step_dir(step)}: missing checkpoint item(s) {missing} "
                                  f"(found {sorted(p.name for p in self.step_dir(step).iterdir())})")

    def _check(self, step: int, targets: Mapping[str, Any], need_data: bool = False) -> None:
        self._require_items(step, tuple(targets) + ("meta",) + (("data",) if need_data else ()))
        meta = self.read_metadata(step)
        problems = []
        if "model_config" in self.metadata and "model_config" in meta:
            problems += compare_model_configs(meta["model_config"], self.metadata["model_config"])
        if "head_config" in self.metadata and "head_config" in meta and meta["head_config"] != self.metadata["head_config"]:
            problems.append(f"head_config: checkpoint {meta['head_config']}, current {self.metadata['head_config']}")
        try:
            saved = self.manager.item_metadata(step)
        except Exception as e:  # noqa: BLE001
            raise CheckpointError(f"{self.step_dir(step)}: unreadable item metadata ({type(e).__name__}: {e})") from e
        for name, target in targets.items():
            tree = saved[name] if name in saved.keys() else None
            if tree is None:
                raise CheckpointError(f"{self.step_dir(step)}/{name}: unreadable or empty item metadata")
            problems += compare_trees(tree, target, name)
        if problems:
            shown = "\n  ".join(problems[:20]) + ("\n  ..." if len(problems) > 20 else "")
            raise CheckpointError(f"{self.step_dir(step)} does not match the model being restored "
                                  f"({len(problems)} problem(s)):\n  {shown}")

    def _restore(self, step: int, **args: Any) -> Any:
        try:
            return self.manager.restore(step, args=ocp.args.Composite(**args))
        except CheckpointError:
            raise
        except Exception as e:  # noqa: BLE001 - name the checkpoint in whatever the reader raised
            raise CheckpointError(f"{self.step_dir(step)}: cannot restore item(s) {sorted(args)}: "
                                  f"{type(e).__name__}: {e}") from e

    def close(self) -> None:
        self.manager.wait_until_finished()
        self.manager.close()

    def __enter__(self) -> "Checkpointer":
        return self

    def __exit__(self, *exc) -> None:
        self.close()
