"""Device mesh from a `--mesh=data:2,fsdp:2,tensor:2` spec, parameter partition rules, shard helpers.

Axes: `data` (pure data parallelism), `fsdp` (data parallelism with parameters sharded), `tensor`
(attention heads and MLP hidden units split). Activations put the batch over (data, fsdp).
"""
from __future__ import annotations

import math
import re
from typing import Any, Iterable, Sequence

import jax
import numpy as np
from jax.sharding import AxisType, Mesh, NamedSharding, PartitionSpec as P

AXES = ("data", "fsdp", "tensor")
BATCH_AXES = ("data", "fsdp")

# Logical activation axes → mesh axes.
_LOGICAL = {"batch": BATCH_AXES, "heads": "tensor", "mlp": "tensor", "vocab": "tensor", None: None}


class MeshError(ValueError):
    """A mesh spec that is malformed or does not fit the devices / the model."""


def parse_mesh_spec(spec: str, num_devices: int | None = None) -> dict[str, int]:
    """`"data:2,fsdp:2,tensor:2"` → {"data": 2, "fsdp": 2, "tensor": 2}; omitted axes are 1.

    `"auto"` puts every device on `data`. When `num_devices` is given, the product must equal it.
    """
    num_devices = jax.device_count() if num_devices is None else num_devices
    spec = spec.strip()
    if spec == "auto":
        return {"data": num_devices, "fsdp": 1, "tensor": 1}
    sizes = dict.fromkeys(AXES, 1)
    seen = set()
    for part in filter(None, (p.strip() for p in spec.split(","))):
        name, sep, value = part.partition(":")
        if not sep or name not in AXES:
            raise MeshError(f"mesh spec {spec!r}: bad entry {part!r}; expected AXIS:SIZE with AXIS in {AXES}, or 'auto'")
        if name in seen:
            raise MeshError(f"mesh spec {spec!r}: axis {name!r} given twice")
        if not value.isdigit() or int(value) < 1:
            raise MeshError(f"mesh spec {spec!r}: size of {name!r} must be a positive integer, got {value!r}")
        seen.add(name)
        sizes[name] = int(value)
    total = math.prod(sizes.values())
    if total != num_devices:
        hosts = (f", {jax.process_count()} processes x {jax.local_device_count()} local devices"
                 if jax.process_count() > 1 else "")
        raise MeshError(f"mesh spec {spec!r} needs {total} devices but {num_devices} are available "
                        f"({jax.default_backend()}{hosts}); the product of the axis sizes must equal the "
                        "(global) device count")
    return sizes


def make_mesh(spec: str | dict[str, int] = "auto", devices: Sequence[jax.Device] | None = None) -> Mesh:
    """A 3-axis (data, fsdp, tensor) mesh over `devices` (default: all)."""
    devices = list(jax.devices() if devices is None else devices)
    sizes = parse_mesh_spec(spec, len(devices)) if isinstance(spec, str) else dict(spec)
    grid = np.asarray(devices).reshape([sizes[a] for a in AXES])
    return Mesh(grid, AXES, axis_types=(AxisType.Auto,) * len(AXES))


# ---- parameter partition rules -------------------------------------------------------------------
# (regex over the "/"-joined parameter path, spec per dimension). First match wins; every parameter
# must match a rule, so a new parameter cannot silently end up replicated.
PARAM_RULES: tuple[tuple[str, tuple[Any, ...]], ...] = (
    (r"(^|/)embed$", ("tensor", "fsdp")),                    # [V, D]
    (r"(^|/)lm_head$", ("fsdp", "tensor")),                  # [D, V]
    (r"attn/(q|k|v)_proj$", ("fsdp", "tensor", None)),       # [D, H, hd]
    (r"attn/(q|k|v)_bias$", ("tensor", None)),               # [H, hd]
    (r"attn/o_proj$", ("tensor", None, "fsdp")),             # [H, hd, D]
    (r"mlp/(gate|up)_proj$", ("fsdp", "tensor")),            # [D, F]
    (r"mlp/down_proj$", ("tensor", "fsdp")),                 # [F, D]
    # LoRA adapters (models/lora.py): A `[*in, r]`, B `[r, *out]`, sharded like their kernel's in/out dims.
    (r"attn/(q|k|v)_lora/a$", ("fsdp", None)),               # [D, r]
    (r"attn/(q|k|v)_lora/b$", (None, "tensor", None)),       # [r, H, hd]
    (r"attn/o_lora/a$", ("tensor", None, None)),             # [H, hd, r]
    (r"attn/o_lora/b$", (None, "fsdp")),                     # [r, D]
    (r"mlp/(gate|up)_lora/a$", ("fsdp", None)),              # [D, r]
    (r"mlp/(gate|up)_lora/b$", (None, "tensor")),            # [r, F]
    (r"mlp/down_lora/a$", ("tensor", None)),                 # [F, r]
    (r"mlp/down_lora/b$", (None, "fsdp")),                   # [r, D]
    (r"(norm|scale)$", (None,)),
    (r"^head/", ()),                                          # scoring head: small, replicated
)


def path_str(path: Iterable[Any]) -> str:
    """"layers/0/attn/q_proj" from a pytree key path (an nnx.Variable's trailing "value" is dropped)."""
    parts = [str(getattr(p, "key", getattr(p, "name", getattr(p, "idx", p)))) for p in path]
    if parts and parts[-1] == "value":
        parts.pop()
    return "/".join(parts)


def spec_for(path: str, shape: tuple[int, ...], mesh: Mesh, rules=PARAM_RULES) -> P:
    """PartitionSpec of one parameter; raises MeshError when no rule matches or a dim is not divisible."""
    for pattern, axes in rules:
        if re.search(pattern, path):
            axes = tuple(axes) + (None,) * (len(shape) - len(axes))
            axes = axes[:len(shape)] if len(axes) > len(shape) else axes
            for dim, (size, axis) in enumerate(zip(shape, axes)):
                n = mesh.shape[axis] if axis else 1
                if size % n:
                    raise MeshError(f"parameter {path!r} {shape}: dimension {dim} (size {size}) is not divisible "
                                    f"by mesh axis {axis!r} of size {n}; choose a mesh whose {axis} size divides {size}")
            return P(*axes)
    raise MeshError(f"no partition rule matches parameter {path!r} {shape}; add one to r2rank_jax.mesh.PARAM_RULES")


def param_shardings(tree: Any, mesh: Mesh, prefix: str = "", rules=PARAM_RULES) -> Any:
    """A tree of NamedShardings matching `tree` (arrays or ShapeDtypeStructs) under the partition rules."""
    def one(path, leaf):
        name = (prefix + "/" if prefix else "") + path_str(path)
        return NamedSharding(mesh, spec_for(name, tuple(leaf.shape), mesh, rules))
    return jax.tree_util.tree_map_with_path(one, tree)


def shard_params(tree: Any, mesh: Mesh, prefix: str = "") -> Any:
    """Places every array of `tree` onto its partition-rule sharding."""
    return jax.device_put(tree, param_shardings(tree, mesh, prefix))


def batch_sharding(mesh: Mesh, ndim: int) -> NamedSharding:
    """Leading dim over (data, fsdp), the rest replicated."""
    return NamedSharding(mesh, P(BATCH_AXES, *([None] * (ndim - 1))))


# ---- activation sharding constraints -------------------------------------------------------------

def constrain(x: jax.Array, logical: tuple[Any, ...]) -> jax.Array:
    """Sharding hint for an activation under the current mesh (`jax.set_mesh`); a no-op without one
    and inside `shard_map` (manual axes: each device already holds its own block).

    Logical axes: "batch", "heads", "mlp", "vocab" or None. A dimension that its mesh axes do not
    divide is left unconstrained (activations may have odd sizes; parameters may not).
    """
    mesh = jax.sharding.get_abstract_mesh()
    if mesh.empty or any(t == AxisType.Manual for t in mesh.axis_types):
        return x
    spec = []
    for size, name in zip(x.shape, logical):
        axes = _LOGICAL[name]
        names = (axes,) if isinstance(axes, str) else (axes or ())
        n = math.prod(mesh.shape[a] for a in names)
        spec.append(axes if axes and size % n == 0 else None)
    return jax.lax.with_sharding_constraint(x, P(*spec))
