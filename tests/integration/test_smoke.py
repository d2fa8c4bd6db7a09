"""The quick-start path: serve, send, run, stop."""

from __future__ import annotations

from tests.integration.clients import without_progress


def test_send_prints_lines_and_exits_zero(env, service):
    result = env.run("send", "a", "--counter", "3")
    assert result.returncode == 0, result.stderr
    assert result.stdout == "Hello world! 0\nHello world! 1\nHello world! 2\n"
    assert without_progress(result.stderr) == ""


def test_service_stops_with_exit_zero(env, service):
    assert "listening on" in service.banner
    assert service.stop() == 0
    assert not env.socket.exists()
