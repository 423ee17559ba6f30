"""One `all` run of configs/debug_cpu.py per session, shared by the launcher tests that only read it."""
import pathlib

import pytest

DEBUG = str(pathlib.Path(__file__).resolve().parents[2] / "configs" / "debug_cpu.py")


@pytest.fixture(scope="session")
def debug_run(tmp_path_factory) -> pathlib.Path:
    """The workdir of `launch --config=configs/debug_cpu.py --config.rl.steps=2 all` (~1 min). Tests must
    not modify it: copy what they need into their own workdir."""
    from r2rank_jax import launch

    workdir = tmp_path_factory.mktemp("debug-run")
    assert launch.main([f"--config={DEBUG}", f"--workdir={workdir}", "--config.rl.steps=2", "all"]) == 0
    return workdir
