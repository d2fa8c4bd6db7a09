"""Fixtures shared by the store's unit tests (test_store, test_store_scale)."""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from pathlib import Path

import pytest

from orcha.service.store import Store


@pytest.fixture
def db_path(tmp_path: Path) -> str:
    return str(tmp_path / "petitions.db")


@pytest.fixture
def store(db_path: str) -> Iterator[Store]:
    s = Store(db_path)
    yield s
    try:
        s.close()
    except sqlite3.Error:
        pass
