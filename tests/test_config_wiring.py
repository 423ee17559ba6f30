"""Every field of every launcher Spec reaches the code it configures.

For each leaf field of `ExperimentConfig`, the test overrides it (a valid other value, the way
`--config.F=V` would) and asks `launch.resolved_plans` — every library config the stages build from
the config — whether anything changed, on a few base configs (the debug config, a prepared-data source,
a run of each method): a field nobody reads changes nothing and fails. A Spec a method hands to its
library code whole (R²ec's, R2Rec's, the eval stage's) cannot show a change that way; for its fields
the test instead requires an attribute read of that name in the package outside config.py.
"""
import ast
import dataclasses
import pathlib

import pytest

from r2rank_jax import config as config_module, launch
from r2rank_jax.config import ConfigError, ExperimentConfig, apply_overrides, load_config_file, write_resolved
from r2rank_jax.methods import registry

ROOT = pathlib.Path(__file__).resolve().parents[1]
DEBUG = ROOT / "configs" / "debug_cpu.py"

# Valid other values for string fields that name a choice (anything else gets "_x" appended).
CHOICES = {
    "data.source": "recbole:/nonexistent/Games", "data.split": "loo", "data.negatives": "popularity",
    "data.prompt_variant": "no_cot", "model.kind": "hf", "model.dtype": "bfloat16", "model.param_dtype": "bfloat16",
    "model.remat": "full", "teacher.kind": "openai", "teacher.style": "full", "rl.advantage": "item",
    "rl.baseline": "none", "rl.token_aggregation": "sum", "r2ec.item_loss": "ce", "eval.split": "valid",
    "eval.reference": "sft_only", "method": "tallrec", "tokenizer": "/nonexistent/tokenizer",
}
# Identity of the run rather than a setting; what it does is tested below (a workdir keeps its config name).
NOT_A_SETTING = {"name"}


def leaves(obj, prefix=""):
    for f in dataclasses.fields(obj):
        value = getattr(obj, f.name)
        if dataclasses.is_dataclass(value):
            yield from leaves(value, f"{prefix}{f.name}.")
        else:
            yield f"{prefix}{f.name}", value


def other_value(path: str, value):
    if path in CHOICES:
        return CHOICES[path] if CHOICES[path] != value else "synthetic"
    if isinstance(value, bool):
        return not value
    if isinstance(value, int):
        return value + 1
    if isinstance(value, float):
        return value / 2 if value else 0.25
    if isinstance(value, str):
        return value + "_x"
    if isinstance(value, tuple):
        if path.endswith("buckets"):
            return (*value, max(value) + 64)
        if path == "eval.compare":
            return ("other=/nonexistent/run",)
        if path == "eval.baselines":
            return (*value, "sasrec")
        if path == "eval.methods":
            return value[:-1] if len(value) > 1 else ("zero_shot_pointwise",)
        return value[:-1] if len(value) > 1 else (*value, "Sure")
    raise TypeError(f"{path}: no perturbation for {type(value).__name__}")


def with_value(cfg, path: str, value):
    head, _, rest = path.partition(".")
    if not rest:
        return dataclasses.replace(cfg, **{head: value})
    return dataclasses.replace(cfg, **{head: with_value(getattr(cfg, head), rest, value)})


SPEC_CLASSES = tuple(c for c in vars(config_module).values()
                     if isinstance(c, type) and dataclasses.is_dataclass(c) and c.__module__ == config_module.__name__)


def comparable(plans):
    """The plans with every Spec passed whole replaced by its class name; the set of those classes."""
    whole = set()

    def strip(x):
        if isinstance(x, SPEC_CLASSES):
            whole.add(type(x))
            return f"<whole {type(x).__name__}>"
        if isinstance(x, dict):
            return {k: strip(v) for k, v in x.items()}
        if isinstance(x, (tuple, list)):
            return type(x)(strip(v) for v in x)
        return x

    return repr(strip(plans)), whole


def attribute_reads() -> set[str]:
    names = set()
    for path in (ROOT / "r2rank_jax").rglob("*.py"):
        if path.name == "config.py" and path.parent.name == "r2rank_jax":
            continue
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Attribute) and isinstance(node.ctx, ast.Load):
                names.add(node.attr)
    return names


def owner_class(cfg, path: str) -> type:
    obj = cfg
    for part in path.split(".")[:-1]:
        obj = getattr(obj, part)
    return type(obj)


def bases() -> list[ExperimentConfig]:
    debug = load_config_file(DEBUG)
    out = [debug, apply_overrides(debug, {"data.source": "recbole:/nonexistent/Games"})]
    out += [dataclasses.replace(debug, method=m) for m in registry.known() if m != debug.method]
    return out


def unread_fields(base_configs, reads) -> list[str]:
    """Leaf fields of ExperimentConfig that change no resolved plan on any base config (and are not read whole)."""
    fields = [p for p, _ in leaves(base_configs[0]) if p not in NOT_A_SETTING]
    resolved = [comparable(launch.resolved_plans(c)) for c in base_configs]
    unread = []
    for path in fields:
        changed, passed_whole = False, set()
        for cfg, (before, whole) in zip(base_configs, resolved):
            passed_whole |= whole
            value = dict(leaves(cfg))[path]
            try:
                other = with_value(cfg, path, other_value(path, value))
                after, _ = comparable(launch.resolved_plans(other))
            except (ConfigError, ValueError, TypeError):
                changed = True          # refused: the field is read (and validated)
                break
            if after != before:
                changed = True
                break
        if not changed and not (owner_class(base_configs[0], path) in passed_whole and path.split(".")[-1] in reads):
            unread.append(path)
    return unread


def test_every_config_field_reaches_a_library_config():
    assert unread_fields(bases(), attribute_reads()) == []


def test_an_unread_field_fails_the_check():
    # A field added to RLSpec that no stage reads (what ppo_epochs was before issue 19) must be reported.
    @dataclasses.dataclass(frozen=True)
    class RLSpecPlus(config_module.RLSpec):
        unread_knob: int = 1

    cfg = load_config_file(DEBUG)
    plus = dataclasses.replace(cfg, rl=RLSpecPlus(**{f.name: getattr(cfg.rl, f.name) for f in dataclasses.fields(cfg.rl)}))
    assert unread_fields([plus], attribute_reads()) == ["rl.unread_knob"]


def test_name_identifies_the_workdir(tmp_path):
    cfg = load_config_file(DEBUG)
    write_resolved(cfg, tmp_path)
    with pytest.raises(ConfigError, match="holds a run of config 'debug_cpu'"):
        write_resolved(dataclasses.replace(cfg, name="other"), tmp_path)
