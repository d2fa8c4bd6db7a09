"""``orcha status --json`` printed a page at a time: the very text of the document
printed whole (tests/unit/test_cli_output.py has the rest of the JSON output)."""

from __future__ import annotations

import json
from typing import Any

import pytest

from orcha.cli.status_view import json_pages

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
