"""Multi-host (multi-process) JAX: initialization from the environment, host input shards, global batches.

    settings = settings_from_env(os.environ)     # None: a single-process run
    initialize(settings)                         # jax.distributed.initialize(...) before any device use
    index, count = host_batch_shard(mesh)        # this host's block of every global batch
    batch = put_local(host_batch, mesh)          # host rows -> one global jax.Array (rows over data, fsdp)

Environment (the first of each pair that is set wins):

- coordinator ``host:port``: ``R2RANK_COORDINATOR_ADDRESS`` or ``JAX_COORDINATOR_ADDRESS``;
- ``R2RANK_NUM_PROCESSES`` / ``JAX_NUM_PROCESSES`` and ``R2RANK_PROCESS_ID`` / ``JAX_PROCESS_ID``
  (both or neither; neither: JAX detects them, on Cloud TPU, SLURM, Open MPI, Kubernetes);
- ``R2RANK_DISTRIBUTED=1`` with nothing else: JAX's auto-detection alone (a TPU pod slice);
- ``JAX_LOCAL_DEVICE_IDS`` (read by JAX itself); ``R2RANK_INIT_TIMEOUT`` seconds (default 300);
- ``R2RANK_SHUTDOWN_TIMEOUT`` seconds a finished process waits at exit for the others (default 3600: after
  eval's merge, process 0 alone still trains the classic baselines and writes the results, which can outlast
  JAX's 300 s default; a process that dies is still noticed by the heartbeat, within 100 s).

Single-process runs (no variable set) never call `jax.distributed` and `put_local` is `device_put`.
"""
from __future__ import annotations

import dataclasses
import math
import os
from collections.abc import Mapping
from typing import Any

import jax
import numpy as np


class DistributedError(ValueError):
    """Bad multi-host environment or a mesh/batch that does not fit the processes."""


@dataclasses.dataclass(frozen=True)
class DistributedSettings:
    coordinator_address: str | None = None   # None: auto-detected by JAX
    num_processes: int | None = None
    process_id: int | None = None
    initialization_timeout: int = 300
    shutdown_timeout: int = 3600


def _first(env: Mapping[str, str], *names: str) -> tuple[str | None, str | None]:
    for name in names:
        if env.get(name, "").strip():
            return name, env[name].strip()
    return None, None


def _int(env: Mapping[str, str], *names: str) -> int | None:
    name, value = _first(env, *names)
    if value is None:
        return None
    try:
        return int(value)
    except ValueError:
        raise DistributedError(f"environment variable {name}={value!r} is not an integer") from None


def settings_from_env(env: Mapping[str, str] | None = None) -> DistributedSettings | None:
    """The multi-host settings the environment asks for (module docstring), or None for one process."""
    env = os.environ if env is None else env
    _, address = _first(env, "R2RANK_COORDINATOR_ADDRESS", "JAX_COORDINATOR_ADDRESS")
    num = _int(env, "R2RANK_NUM_PROCESSES", "JAX_NUM_PROCESSES")
    pid = _int(env, "R2RANK_PROCESS_ID", "JAX_PROCESS_ID")
    flag = env.get("R2RANK_DISTRIBUTED", "").strip()
    if flag not in ("", "0", "1"):
        raise DistributedError(f"R2RANK_DISTRIBUTED={flag!r}: expected 0 or 1")
    if address is None and num is None and pid is None and flag != "1":
        return None
    if flag == "0":
        return None
    if (num is None) != (pid is None):
        raise DistributedError("set both the number of processes (R2RANK_NUM_PROCESSES or JAX_NUM_PROCESSES) and "
                               "this process's id (R2RANK_PROCESS_ID or JAX_PROCESS_ID), or neither (auto-detection)")
    if num is not None and (num < 1 or not 0 <= pid < num):
        raise DistributedError(f"need num_processes >= 1 and 0 <= process_id < num_processes, got {num}, {pid}")
    if num is not None and num > 1 and address is None:
        raise DistributedError(f"{num} processes need a coordinator: set R2RANK_COORDINATOR_ADDRESS or "
                               "JAX_COORDINATOR_ADDRESS to host:port of process 0")
    if address is not None and ":" not in address:
        raise DistributedError(f"coordinator address {address!r}: expected host:port")
    timeouts = {field: value for field, value in (("initialization_timeout", _int(env, "R2RANK_INIT_TIMEOUT")),
                                                  ("shutdown_timeout", _int(env, "R2RANK_SHUTDOWN_TIMEOUT")))
                if value is not None}
    for field, value in timeouts.items():
        if value < 1:
            raise DistributedError(f"{field} must be a positive number of seconds, got {value}")
    return DistributedSettings(address, num, pid, **timeouts)


def initialize(settings: DistributedSettings | None) -> bool:
    """`jax.distributed.initialize` with ``settings`` (before anything touches the devices); False when
    ``settings`` is None (one process) or JAX is already initialized."""
    if settings is None:
        return False
    from jax._src import distributed as _dist

    if _dist.global_state.client is not None:
        return False
    jax.distributed.initialize(coordinator_address=settings.coordinator_address,
                               num_processes=settings.num_processes, process_id=settings.process_id,
                               initialization_timeout=settings.initialization_timeout,
                               shutdown_timeout_seconds=settings.shutdown_timeout)
    return True


def is_primary() -> bool:
    """Process 0 writes the files that are not Orbax's (config.json, metrics, reports)."""
    return jax.process_index() == 0


def barrier(name: str) -> None:
    """All processes wait here (no-op with one process)."""
    if jax.process_count() > 1:
        from jax.experimental import multihost_utils

        multihost_utils.sync_global_devices(name)


def describe() -> str:
    return (f"process {jax.process_index()}/{jax.process_count()}: {jax.local_device_count()} local of "
            f"{jax.device_count()} {jax.default_backend()} devices")


# ---- input shards --------------------------------------------------------------------------------

def host_batch_shard(mesh) -> tuple[int, int]:
    """(index, count): this process feeds rows ``[index*B/count, (index+1)*B/count)`` of every global
    batch of B rows, the rows its devices hold under `mesh.batch_sharding` (batch over data × fsdp).

    Processes whose devices hold the same rows (e.g. `tensor` spanning hosts) share an index and must
    read the same data. (0, 1) without a mesh or with one process.
    """
    if mesh is None or jax.process_count() == 1:
        return 0, 1
    from r2rank_jax.mesh import batch_sharding

    n = math.prod(mesh.shape[a] for a in ("data", "fsdp"))
    rows: dict[int, set[int]] = {}
    for device, index in batch_sharding(mesh, 1).devices_indices_map((n,)).items():
        rows.setdefault(device.process_index, set()).add(index[0].start or 0)
    blocks = sorted({tuple(sorted(r)) for r in rows.values()})
    starts = [r for block in blocks for r in block]
    if starts != list(range(n)) or len({len(b) for b in blocks}) != 1 or \
            any(list(b) != list(range(b[0], b[0] + len(b))) for b in blocks):
        raise DistributedError(f"mesh {dict(mesh.shape)}: the batch rows of the processes' devices are not equal "
                               f"contiguous blocks ({[list(b) for b in blocks]}); order the mesh so that each "
                               "process's devices are adjacent along (data, fsdp)")
    mine = rows[jax.process_index()]
    return blocks.index(tuple(sorted(mine))), len(blocks)


def host_batch_size(global_batch: int, mesh, what: str = "batch_size") -> int:
    """Rows per host of a ``global_batch`` (checks that it splits over the hosts and the batch axes)."""
    _, count = host_batch_shard(mesh)
    if mesh is not None:
        n = math.prod(mesh.shape[a] for a in ("data", "fsdp"))
        if global_batch % n:
            raise DistributedError(f"{what}={global_batch} is not divisible by the mesh's data x fsdp = {n} devices")
    if global_batch % count:
        raise DistributedError(f"{what}={global_batch} does not split over {count} host input shards")
    return global_batch // count


# ---- host arrays -> global arrays ----------------------------------------------------------------

def put_local(x: Any, sharding) -> jax.Array:
    """This host's block of rows (`host_batch_shard`) → the global array (leading dim sharded as
    ``sharding``). One process: `jax.device_put`."""
    x = np.asarray(x)
    if jax.process_count() == 1:
        return jax.device_put(x, sharding)
    _, count = host_batch_shard(sharding.mesh)
    global_shape = (x.shape[0] * count,) + x.shape[1:]
    return jax.make_array_from_process_local_data(sharding, x, global_shape)


def put_replicated_input(x: Any, sharding) -> jax.Array:
    """A host array that is the same on every process (e.g. an evaluation batch every host built) →
    the global array. One process: `jax.device_put`."""
    x = np.asarray(x)
    if jax.process_count() == 1:
        return jax.device_put(x, sharding)
    return jax.make_array_from_callback(x.shape, sharding, lambda index: x[index])


def put_batch(batch: Any, mesh=None, host_rows: bool = True) -> Any:
    """Host arrays of a batch (any pytree) → device arrays, batch dim over (data, fsdp) on a mesh. Multi-host:
    ``host_rows`` means ``batch`` holds this host's rows of the global batch (`put_local`); otherwise every
    host passes the same whole batch (`put_replicated_input`)."""
    import jax.numpy as jnp

    if mesh is None:
        return jax.tree.map(jnp.asarray, batch)
    from r2rank_jax.mesh import batch_sharding

    put = put_local if host_rows else put_replicated_input
    return jax.tree.map(lambda x: put(x, batch_sharding(mesh, np.ndim(x))), batch)


def put_same_value(tree: Any, shardings: Any) -> Any:
    """`jax.device_put(tree, shardings)` for values that are equal on every process (e.g. parameters
    initialized or restored on each host's local device) onto shardings spanning all processes:
    `device_put` refuses committed local arrays there, so each process copies its addressable pieces
    from host memory. One process: plain `jax.device_put`."""
    if jax.process_count() == 1:
        return jax.device_put(tree, shardings)

    def one(x, sharding):
        if isinstance(x, jax.Array) and not x.is_fully_addressable:
            return jax.device_put(x, sharding)
        value = np.asarray(jax.device_get(x))
        return jax.make_array_from_callback(value.shape, sharding, lambda index: value[index])
    if isinstance(shardings, jax.sharding.Sharding):
        return jax.tree.map(lambda x: one(x, shardings), tree)
    return jax.tree.map(one, tree, shardings)


def to_host(x: jax.Array) -> np.ndarray:
    """The whole value of a (possibly cross-process sharded) array on every host."""
    if getattr(x, "is_fully_addressable", True) or getattr(x, "is_fully_replicated", False):
        return np.asarray(jax.device_get(x))
    from jax.experimental import multihost_utils

    return np.asarray(multihost_utils.process_allgather(x, tiled=True))


# ---- per-host work: blocks of items, host-local model copies, gathering blocks -------------------

def host_block(n: int, index: int | None = None, count: int | None = None) -> slice:
    """Process ``index`` of ``count``'s contiguous block of ``n`` items (default: this process of all):
    ``[index * n // count, (index + 1) * n // count)``; blocks differ in size by at most one, in process order."""
    index = jax.process_index() if index is None else index
    count = jax.process_count() if count is None else count
    if not 0 <= index < count or n < 0:
        raise DistributedError(f"host_block: need 0 <= index < count and n >= 0, got {index}, {count}, {n}")
    return slice(index * n // count, (index + 1) * n // count)


def local_mesh(mesh):
    """This process's devices as a (data=1, fsdp, tensor) mesh: a host-local replica of a model sharded over
    `mesh`, with `mesh`'s tensor size where it divides the local device count. One process (or no mesh): `mesh`."""
    if mesh is None or jax.process_count() == 1:
        return mesh
    from r2rank_jax.mesh import make_mesh

    return make_mesh(_local_sizes(mesh), devices=jax.local_devices())


def _local_sizes(mesh) -> dict[str, int]:
    n = jax.local_device_count()
    tensor = math.gcd(mesh.shape.get("tensor", 1), n)
    return {"data": 1, "fsdp": n // tensor, "tensor": tensor}


def host_replica(tree: Any, mesh) -> Any:
    """Parameters sharded over `mesh` (every process's devices) → the same values on this process's
    `local_mesh` (partition rules), fully addressable: each host then computes on its own (e.g. samples for
    its own users) without collectives. One all-gather across hosts, on the devices; every process must call
    it. One process (or no mesh): ``tree`` itself."""
    if mesh is None or jax.process_count() == 1:
        return tree
    from jax.sharding import Mesh, NamedSharding

    from r2rank_jax.mesh import AXES, make_mesh, param_shardings

    sizes = _local_sizes(mesh)
    grids = [make_mesh(sizes, devices=[d for d in jax.devices() if d.process_index == p]).devices
             for p in range(jax.process_count())]
    hosts = Mesh(np.stack(grids), ("hosts", *AXES))          # replicated over "hosts", as local_mesh within each
    mine = local_mesh(mesh)
    local = param_shardings(tree, mine)

    def one(x, sharding):
        y = jax.device_put(x, NamedSharding(hosts, sharding.spec))
        return jax.make_array_from_single_device_arrays(x.shape, sharding, [s.data for s in y.addressable_shards])
    return jax.tree.map(one, tree, local)


def gather_blocks(x: Any, n: int) -> np.ndarray:
    """Every process's `host_block` of ``n`` rows (``x``: this process's rows ``[n_i, ...]``) → all ``n`` rows,
    in process order, on every host. One process: ``x``."""
    x = np.asarray(x)
    if jax.process_count() == 1:
        return x
    sizes = [host_block(n, p).stop - host_block(n, p).start for p in range(jax.process_count())]
    if x.shape[0] != sizes[jax.process_index()]:
        raise DistributedError(f"gather_blocks: process {jax.process_index()} holds {x.shape[0]} rows, its block "
                               f"of {n} is {sizes[jax.process_index()]}")
    from jax.experimental import multihost_utils

    padded = np.zeros((max(sizes),) + x.shape[1:], x.dtype)
    padded[:x.shape[0]] = x
    every = np.asarray(multihost_utils.process_allgather(padded))          # [processes, max block, ...]
    return np.concatenate([every[p, :s] for p, s in enumerate(sizes)])
