"""orcha.cli.kinds: the listing of runtime kinds, read without a service."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Any

import click
import pytest
from click.testing import CliRunner

from orcha.cli import kinds


class FakeService:
    def __init__(self, listing: list[dict[str, Any]]) -> None:
        self.listing = listing

    def kinds(self) -> list[dict[str, Any]]:
        return self.listing


def kind(name: str, parent: str = "shell", available: bool = True) -> dict[str, Any]:
    return {"name": name, "from": parent, "params": {"argv": ["true"]}, "schedule": {},
            "available": available}  # fmt: skip


def test_kinds_ls_aligns_its_columns(monkeypatch: pytest.MonkeyPatch) -> None:
    listing = [kind("k1"), kind("k11"), kind("k2", "hello")]

    @contextlib.contextmanager
    def fake_client(ctx: click.Context) -> Iterator[FakeService]:
        yield FakeService(listing)

    monkeypatch.setattr(kinds, "client", fake_client)
    result = CliRunner().invoke(kinds.kinds_ls, [])
    assert result.exit_code == 0, result.output
    assert result.output.splitlines() == [
        'k1   from shell  argv=["true"]',
        'k11  from shell  argv=["true"]',
        'k2   from hello  argv=["true"]',
    ]
