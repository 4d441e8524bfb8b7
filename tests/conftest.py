"""Fixtures shared by unit and integration tests. Fixtures are factories."""

from __future__ import annotations

import uuid
from collections.abc import Callable
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture
def unique_name() -> Callable[[str], str]:
    """Factory of names no other test uses: topics, group ids, prefixes."""

    def make(prefix: str) -> str:
        return f"{prefix}-{uuid.uuid4().hex[:10]}"

    return make
