"""The accelerator extras pin the same JAX as the core dependencies (a mismatch would pull another jaxlib)."""
import pathlib
import re
import tomllib

PYPROJECT = pathlib.Path(__file__).resolve().parents[1] / "pyproject.toml"


def test_accelerator_extras_pin_the_core_jax():
    project = tomllib.loads(PYPROJECT.read_text())["project"]
    pins = dict(re.fullmatch(r"([\w-]+)==([\w.]+)", d).groups() for d in project["dependencies"])
    assert pins["jax"] == pins["jaxlib"]
    extras = project["optional-dependencies"]
    assert extras["cuda"] == [f"jax[cuda12]=={pins['jax']}"]
    assert extras["tpu"] == [f"jax[tpu]=={pins['jax']}"]
