"""Manual check (not collected by pytest, ~1-2 min): 3 RL `train_step`s as 2 `jax.distributed` CPU processes
(2 devices each, mesh fsdp:4 over both, each process putting only its users' rows with
`distributed.put_batch`) vs one process on 4 devices with the whole batch.

    PYTHONPATH=$PWD python tests/launch/_multihost_rl_step.py

Prints per-step loss / head loss of both runs, the largest difference and a parameter checksum; exits
non-zero when they differ by more than 1e-5. docs/multihost.md has the measured output.
"""
from __future__ import annotations

import json
import os
import pathlib
import socket
import subprocess
import sys

STEPS, USERS, MESH = 3, 4, "fsdp:4"
KEYS = ("loss", "loss_theta", "loss_phi", "reward", "grad_norm_llm", "checksum")
HERE = pathlib.Path(__file__).resolve()
sys.path.insert(0, str(HERE.parents[1] / "train"))


def run(process_id: int, num_processes: int) -> list[dict]:
    import jax
    import numpy as np

    from r2rank_jax.mesh import make_mesh
    from r2rank_jax.distributed import put_batch
    from r2rank_jax.run.builders import optimizer
    from r2rank_jax.config import OptimSpec
    from r2rank_jax.train.rl import RLConfig, make_train_step
    from r2rank_jax.train.state import create_train_state, state_shardings
    from rl_fixtures import make_batch, tiny_models

    mesh = make_mesh(MESH, devices=jax.devices()[:4])
    model, head = tiny_models(0)
    static, state = create_train_state(model, head, optimizer(OptimSpec(learning_rate=1e-3)),
                                       optimizer(OptimSpec(learning_rate=1e-3)), jax.random.PRNGKey(0), mesh)
    step = make_train_step(static, RLConfig(num_rankings=2, baseline="loo_users"), state_shardings(state), mesh)
    rows = slice(process_id * USERS // num_processes, (process_id + 1) * USERS // num_processes)
    out = []
    for i in range(STEPS):
        batch = jax.tree.map(lambda x: np.asarray(x)[rows], make_batch(i, users=USERS))   # this host's users
        state, metrics = step(state, put_batch(batch, mesh))
        out.append({k: float(v) for k, v in jax.device_get(metrics).items() if np.ndim(v) == 0})
    from r2rank_jax.distributed import to_host
    out.append({"checksum": float(sum(np.sum(to_host(x).astype(np.float64)) for x in jax.tree.leaves(state.llm)))})
    return out


def main() -> int:
    if len(sys.argv) == 4 and sys.argv[1] == "--worker":
        from r2rank_jax import distributed

        pid, port = int(sys.argv[2]), sys.argv[3]
        distributed.initialize(distributed.DistributedSettings(f"127.0.0.1:{port}", 2, pid, 120))
        print("RESULT " + json.dumps(run(pid, 2)), flush=True)
        return 0
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    env = dict(os.environ, XLA_FLAGS="--xla_force_host_platform_device_count=2", JAX_PLATFORMS="cpu")
    procs = [subprocess.Popen([sys.executable, str(HERE), "--worker", str(i), str(port)], env=env, text=True,
                              stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, start_new_session=True)
             for i in range(2)]
    try:
        outs = [p.communicate(timeout=300)[0] for p in procs]
    finally:
        for p in procs:
            if p.poll() is None:
                os.killpg(p.pid, 9)
    two = [json.loads(line[7:]) for out in outs for line in out.splitlines() if line.startswith("RESULT ")]
    if len(two) != 2 or two[0] != two[1]:
        print("workers failed or disagree:", outs)
        return 1
    os.environ["XLA_FLAGS"] = "--xla_force_host_platform_device_count=4"
    one = run(0, 1)
    worst = 0.0
    for i, (a, b) in enumerate(zip(one, two[0])):
        shown = {k: (a[k], b[k]) for k in a if k in KEYS}
        worst = max([worst] + [abs(a[k] - b[k]) for k in a if k in KEYS])
        print(f"step {i + 1 if i < STEPS else 'final'}: (one process, two processes) {shown}")
    print(f"max |difference| {worst:.3g}")
    return 0 if worst <= 1e-5 else 1


if __name__ == "__main__":
    sys.exit(main())
