"""The session's tiny analysis workdir (see _analysis_workdir.py)."""
import pathlib

import pytest

from _analysis_workdir import make_workdir


@pytest.fixture(scope="session")
def analysis_workdir(tmp_path_factory) -> pathlib.Path:
    return make_workdir(tmp_path_factory.mktemp("analyses") / "wd")
