"""``orcha status --json`` printed a page at a time: the very text of the document
printed whole (tests/unit/test_cli_output.py has the rest of the JSON output)."""

from __future__ import annotations

import json
from typing import Any

import pytest

from orcha.cli.status_view import json_pages, json_texts
from orcha.client.operations import status_texts

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
    """Answers ``status`` with the replies given, in turn, keeping the requests."""

    def __init__(self, replies: list[dict[str, Any]]) -> None:
        self.replies, self.requests = replies, []  # type: ignore[var-annotated]

    def call(self, name: str, request: dict[str, Any]) -> dict[str, Any]:
        assert name == "status"
        self.requests.append(dict(request))
        return self.replies.pop(0)


def test_status_texts_asks_for_text_and_encodes_the_records_of_an_older_service() -> None:
    session = FakeSession([{"text": '{"seq": 1}', "count": 1, "next": 1},
                           {"petitions": [ROW], "next": None}])  # fmt: skip
    pages = list(status_texts(session, ["QUEUED"], ["g"], 7))  # type: ignore[arg-type]
    assert pages == ['{"seq": 1}', json.dumps(ROW)]
    assert session.requests == [
        {"ids": [], "states": ["QUEUED"], "groups": ["g"], "page": 7, "text": True},
        {"ids": [], "states": ["QUEUED"], "groups": ["g"], "page": 7, "text": True, "after": 1},
    ]
