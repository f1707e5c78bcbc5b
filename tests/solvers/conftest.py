from __future__ import annotations

import pytest

from schemas import load_catalog


@pytest.fixture(scope="session")
def catalog() -> dict:
    return load_catalog().model_dump(mode="json")
