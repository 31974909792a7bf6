"""Shared fixtures. Real-data tests skip with a reason when the archives are absent."""
from __future__ import annotations

from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="session")
def small_synthfaces():
    from upgan_lib.synthfaces import make_synthfaces

    return make_synthfaces(6, 4, seed=0)


def real_archive(name: str) -> Path:
    """Path of a real archive in the data root, or skip the test with the reason."""
    from upgan_lib.config import data_root

    p = data_root() / name
    if not p.exists():
        pytest.skip(f"real data not available: {p} is missing (set UPGAN_DATA to the folder holding {name})")
    return p
