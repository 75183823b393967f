"""Shared test set-up: an isolated model cache per test session, and the shared data folder."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

SHARED_DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"


@pytest.fixture(scope="session", autouse=True)
def _isolated_cache(tmp_path_factory):
    """Toy base models built by tests go to a per-session cache (never the user's ~/.cache)."""
    if "VGROUT_CACHE" not in os.environ:
        os.environ["VGROUT_CACHE"] = str(tmp_path_factory.mktemp("vgrout-cache"))
    yield


@pytest.fixture(scope="session")
def shared_data() -> Path:
    if not SHARED_DATA.is_dir():
        pytest.skip(
            f"real data folder {SHARED_DATA} is absent (CI clones ../shared beside the repo)"
        )
    return SHARED_DATA
