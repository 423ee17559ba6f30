"""Running N `jax.distributed` CPU processes on this machine (127.0.0.1, a free port, 2 devices each), for the
multi-host tests: `spawn(argv, workdir)` runs ``python ARGV...`` as processes 0..N-1 with the launcher's
environment variables and returns their outputs; a timeout or a nonzero exit fails the test (and kills
every process group)."""
import os
import pathlib
import socket
import subprocess
import sys

import pytest

REPO = pathlib.Path(__file__).resolve().parents[2]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def spawn(argv: list[str], timeout_s: float, processes: int = 2, local_devices: int = 2, what: str = "run"
          ) -> list[str]:
    """``sys.executable ARGV`` as processes 0..processes-1 of one job; their outputs (stdout + stderr)."""
    port = free_port()
    procs = []
    for pid in range(processes):
        env = {k: v for k, v in os.environ.items() if not k.startswith(("JAX_", "R2RANK_"))}
        env.update(PYTHONPATH=str(REPO), XLA_FLAGS=f"--xla_force_host_platform_device_count={local_devices}",
                   JAX_PLATFORMS="cpu", R2RANK_COORDINATOR_ADDRESS=f"127.0.0.1:{port}",
                   R2RANK_NUM_PROCESSES=str(processes), R2RANK_PROCESS_ID=str(pid), R2RANK_INIT_TIMEOUT="120")
        procs.append(subprocess.Popen([sys.executable, *argv], env=env, stdout=subprocess.PIPE,
                                      stderr=subprocess.STDOUT, text=True, start_new_session=True))
    outputs = []
    try:
        for p in procs:
            out, _ = p.communicate(timeout=timeout_s)
            outputs.append(out)
    except subprocess.TimeoutExpired:
        pytest.fail(f"the {processes}-process {what} did not finish within {timeout_s} s")
    finally:
        for p in procs:
            if p.poll() is None:
                os.killpg(p.pid, 9)
                p.wait()
    for pid, (p, out) in enumerate(zip(procs, outputs)):
        assert p.returncode == 0, f"process {pid} exited {p.returncode}:\n{out[-4000:]}"
    return outputs
