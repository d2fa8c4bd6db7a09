"""Fixtures for integration tests that run orcha clients in the background."""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from typing import Any

import psutil
import pytest

from tests.conftest import Env
from tests.integration.clients import Client, petition_processes


@pytest.fixture
def start(env: Env) -> Iterator[Callable[..., Client]]:
    """Start an orcha client in the background. Afterwards every client is killed and
    waited for, and any process a petition of this test left behind is killed."""
    clients: list[Client] = []

    def _start(*args: str, **kw: Any) -> Client:
        client = Client(env.popen(*args, **kw))
        clients.append(client)
        return client

    yield _start
    for client in clients:
        client.reap()
    for client in clients:
        petition_id = client.proc.args[4]  # [python, -m, orcha, send|run, ID, ...]
        for proc in petition_processes(str(petition_id)):
            with contextlib.suppress(psutil.Error):
                proc.kill()
