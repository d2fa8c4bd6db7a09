"""``orcha status --json`` printed a page at a time: the very text of the document
printed whole (tests/unit/test_cli_output.py has the rest of the JSON output)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest

from orcha.cli.status_view import json_pages, json_texts
from orcha.client.operations import status_texts
from orcha.errors import ExitCode, PetitionError

ROW: dict[str, Any] = {"seq": 1, "id": "a", "params": {"argv": ["echo", "x\ny"]}, "e": [], "o": {}}


@pytest.mark.parametrize("indent", [None, 2])
@pytest.mark.parametrize(
    "pages", [[], [[]], [[ROW]], [[ROW, {**ROW, "seq": 2}], [], [{**ROW, "seq": 3}]]]
)
def test_pages_print_the_same_text_as_the_whole_document(
    pages: list[list[dict[str, Any]]], indent: int | None
) -> None:
    tail = {"missing": [], "hidden": 0}
    whole = json.dumps({"petitions": [r for p in pages for r in p], **tail}, indent=indent)
    assert "".join(json_pages(iter(pages), tail, indent)) == whole


@pytest.mark.parametrize(
    "pages", [[], [[]], [[ROW]], [[ROW, {**ROW, "seq": 2}], [], [{**ROW, "id": "é\u2603"}]]]
)
def test_pages_of_text_print_the_same_text_as_the_whole_document(
    pages: list[list[dict[str, Any]]],
) -> None:
    tail = {"missing": [], "hidden": 0}
    whole = json.dumps({"petitions": [r for p in pages for r in p], **tail})
    texts = (", ".join(json.dumps(r) for r in page) for page in pages)
    assert "".join(json_texts(texts, tail)) == whole


class FakeSession:
    """Answers ``status`` requests in turn with the replies given (an exception: a
    refusal), keeping the requests and counting the answers not read yet."""

    def __init__(self, replies: list[Any]) -> None:
        self.replies, self.requests, self.unread = replies, [], 0  # type: ignore[var-annotated]

    def send(self, ident: str | None, method: str, name: str, request: dict[str, Any]) -> None:
        assert (ident, method, name) == (None, "call", "status")
        self.requests.append(dict(request))
        self.unread += 1

    def recv(self) -> Any:
        assert self.unread > 0, "read an answer to nothing asked: it would wait forever"
        self.unread -= 1
        reply = self.replies.pop(0)
        if isinstance(reply, Exception):
            raise reply
        return reply


def test_status_texts_asks_for_text_and_encodes_the_records_of_an_older_service() -> None:
    session = FakeSession([{"text": '{"seq": 1}', "count": 1, "next": 1},
                           {"petitions": [ROW], "next": None}])  # fmt: skip
    pages = list(status_texts(session, ["QUEUED"], ["g"], 7))  # type: ignore[arg-type]
    assert pages == ['{"seq": 1}', json.dumps(ROW)]
    assert session.requests == [
        {"ids": [], "states": ["QUEUED"], "groups": ["g"], "page": 7, "text": True},
        {"ids": [], "states": ["QUEUED"], "groups": ["g"], "page": 7, "text": True, "after": 1},
    ]
    assert session.unread == 0


def page(n: int, last: bool = False) -> dict[str, Any]:
    return {"text": f'{{"seq": {n}}}', "count": 1, "next": None if last else n}


def test_the_next_page_is_asked_for_before_a_page_is_handed_on() -> None:
    session = FakeSession([page(1), page(2), page(3, last=True)])
    pages = status_texts(session, [], None, 1)  # type: ignore[arg-type]
    assert next(pages) == '{"seq": 1}'
    assert [r.get("after") for r in session.requests] == [None, 1]  # the second on its way
    assert list(pages) == ['{"seq": 2}', '{"seq": 3}'] and session.unread == 0
    assert len(session.requests) == 3  # none after the last


def test_a_listing_left_early_reads_the_answer_on_its_way() -> None:
    session = FakeSession([page(1), page(2), {"text": "", "next": None}])
    pages = status_texts(session, [], None, 1)  # type: ignore[arg-type]
    assert next(pages) == '{"seq": 1}'
    pages.close()  # e.g. 'orcha status --all --json | head -c 10'
    assert session.unread == 0 and session.replies == [{"text": "", "next": None}]


def test_a_page_refused_leaves_no_answer_to_wait_for() -> None:
    refused = PetitionError("the service cannot read its records now", ExitCode.REFUSED)
    session = FakeSession([page(1), refused])
    pages = status_texts(session, [], None, 1)  # type: ignore[arg-type]
    assert next(pages) == '{"seq": 1}'
    with pytest.raises(PetitionError, match="cannot read"):
        next(pages)
    assert session.unread == 0


class PagesThenFault:
    """A Client whose ``status_pages`` gives ``pages`` then raises ``fault``."""

    def __init__(self, pages: list[list[dict[str, Any]]], fault: Exception) -> None:
        self.pages, self.fault = pages, fault

    def status_pages(self, states: Any, groups: Any, text: bool = False) -> Iterator[Any]:
        for page in self.pages:
            yield ", ".join(json.dumps(r) for r in page) if text else page
        raise self.fault


@pytest.mark.parametrize("tty", [False, True])
def test_no_service_prints_nothing_and_a_lost_one_never_a_closed_document(
    tty: bool, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    from orcha.cli.status_view import print_json_listing
    from orcha.errors import LostServiceError, NoServiceError

    monkeypatch.setattr("sys.stdout.isatty", lambda: tty)
    tail = {"missing": [], "hidden": 0}
    with pytest.raises(NoServiceError):
        print_json_listing(PagesThenFault([], NoServiceError("none")), [], [], tail)  # type: ignore[arg-type]
    assert capsys.readouterr().out == ""
    lost = PagesThenFault([[ROW]], LostServiceError("lost"))
    with pytest.raises(LostServiceError):
        print_json_listing(lost, [], [], tail)  # type: ignore[arg-type]
    out = capsys.readouterr().out
    assert out.startswith("{") and not out.endswith("\n")
    with pytest.raises(json.JSONDecodeError):
        json.loads(out)
