import pathlib
import sys

import pytest

sys.path.insert(0, str(pathlib.Path(__file__).parent))


@pytest.fixture(scope="session")
def browser() -> str:
    import browser as chromium

    path = chromium.find()
    if path is None:
        pytest.skip(chromium.MISSING)
    return path
