"""Arrays: many petitions from one command line, sent in one request.

``orcha run --array 1-100%4 -- CMD {}`` (Slurm's ``--array``) makes one petition per
index; ``orcha run --each FILE -- CMD {}`` (GNU parallel's ``::::``) one per line of a
file. The client sends one ``submit_array`` request (:class:`ArrayRequest`): the petition
as a template, the members (index, and for ``--each`` the line), and the ``%N`` limit; the
service records every member in one transaction and queues them all, or none.

Each member is a petition of its own, called ``NAME_INDEX`` (:func:`member_id`); in its
command, ``{}`` stands for its index (``--each``: its line, appended as the last argument
when the command has no ``{}``, as GNU parallel does); its environment has
``ORCHA_ARRAY_INDEX``, ``ORCHA_ARRAY_NAME`` and ``ORCHA_ARRAY_COUNT``.

Plain data and cheap to import: no ``typing`` at run time.
"""

from __future__ import annotations

from orcha.defaults import (
    ARRAY_PLACEHOLDER,
    ARRAY_SEPARATOR,
    ENV_ARRAY_COUNT,
    ENV_ARRAY_INDEX,
    ENV_ARRAY_NAME,
    MAX_ARRAY_INDEX,
    MAX_ARRAY_MEMBERS,
)
from orcha.protocol.ids import check_id
from orcha.protocol.messages import SubmitRequest

TYPE_CHECKING = False  # typing is not imported at run time: it costs client start-up
if TYPE_CHECKING:
    from typing import Any

#: One member: its index and, for ``--each``, the line it stands for (None: ``--array``).
Member = tuple[int, "str | None"]


def _digits(text: str) -> bool:
    """Whether ``text`` is ASCII digits (``str.isdigit`` alone also takes ``²`` and
    ``٣``, which ``int`` then refuses or reads)."""
    return text.isascii() and text.isdigit()


def parse_spec(text: str) -> tuple[list[int], int | None]:
    """``1-100%4``, ``1,3,5-9``, ``0-20:5`` (Slurm's ``--array`` syntax) -> (the
    indices, ascending and distinct; the ``%N`` limit or None). ValueError saying what is
    wrong, with an example, otherwise."""
    example = "e.g. 1-100, 1,3,5-9, 0-20:5 or 1-100%4"
    spec, percent, limit_text = text.strip().partition("%")
    limit: int | None = None
    if percent:
        if not _digits(limit_text) or int(limit_text) < 1:
            raise ValueError(
                f"{text!r}: the limit after '%' must be a whole number >= 1 ({example})"
            )
        limit = int(limit_text)
    indices: set[int] = set()
    for part in spec.split(","):
        part = part.strip()
        span, colon, step_text = part.partition(":")
        first_text, dash, last_text = span.partition("-")
        if not _digits(first_text) or (dash and not _digits(last_text)):
            raise ValueError(f"{text!r} is not an array ({example})")
        if colon and (not dash or not _digits(step_text) or int(step_text) < 1):
            raise ValueError(f"{text!r}: a step ':N' follows a range and is >= 1 ({example})")
        first = int(first_text)
        last = int(last_text) if dash else first
        if last < first:
            raise ValueError(f"{text!r}: the range {span} runs backwards")
        if last > MAX_ARRAY_INDEX:
            raise ValueError(f"{text!r}: indices go up to {MAX_ARRAY_INDEX}")
        step = int(step_text) if colon else 1
        if len(indices) + (last - first) // step + 1 > MAX_ARRAY_MEMBERS:
            raise ValueError(f"{text!r}: an array has at most {MAX_ARRAY_MEMBERS} members")
        indices.update(range(first, last + 1, step))
    return sorted(indices), limit


def parse_lines(text: str) -> list[Member]:
    """The members of ``--each``: (line number from 1, line) for each line of ``text``
    that is not blank. ValueError if there is none, too many, or a NUL in one."""
    members: list[Member] = []
    for number, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        if "\0" in line:
            raise ValueError(f"line {number} has a NUL character, which no argument can carry")
        members.append((number, line))
        if len(members) > MAX_ARRAY_MEMBERS:
            raise ValueError(f"more than {MAX_ARRAY_MEMBERS} lines: an array has at most that many")
    if not members:
        raise ValueError("there are no lines to run (blank lines are skipped)")
    return members


def member_id(name: str, index: int) -> str:
    """The ID of member ``index`` of array ``name``: ``NAME_INDEX``."""
    return f"{name}{ARRAY_SEPARATOR}{index}"


def check_member_ids(name: str, last: int) -> None:
    """ValueError unless every member ID of array ``name`` with indices up to ``last``
    is a valid ID: one that would be too long names that member, and how long the name
    may be for that range (the name alone being valid)."""
    from orcha.defaults import MAX_ID_LENGTH

    longest = member_id(name, last)
    if len(longest) > MAX_ID_LENGTH:
        shown = longest if len(longest) <= 40 else f"{name[:16]}...{ARRAY_SEPARATOR}{last}"
        room = MAX_ID_LENGTH - len(longest) + len(name)
        raise ValueError(
            f"the member ID {shown} would have {len(longest)} characters, more than "
            f"{MAX_ID_LENGTH}: with indices up to {last}, the array's name may have at most "
            f"{room} (it has {len(name)})"
        )
    check_id(longest)


def params_vary(params: Any, members: list[Member]) -> bool:
    """Whether members' parameters differ from the template's ``params``: some member has
    a line, or some string of ``params`` holds the placeholder. If not, every member's
    parameters are the template's (and may share that one object)."""
    if any(line is not None for _, line in members):
        return True

    def holds(obj: Any) -> bool:
        if isinstance(obj, str):
            return ARRAY_PLACEHOLDER in obj
        if isinstance(obj, list):
            return any(holds(x) for x in obj)
        if isinstance(obj, dict):
            return any(holds(v) for v in obj.values())
        return False

    return holds(params)


def member_params(params: dict[str, Any], member: Member) -> dict[str, Any]:
    """A member's parameters: every ``{}`` in the template's strings replaced by its
    index (or its line). A line that no ``{}`` took is appended to ``argv`` (a command's
    last argument, as GNU parallel does); an index is not (it is in the environment)."""
    index, line = member
    value = str(index) if line is None else line
    used = False

    def fill(obj: Any) -> Any:
        nonlocal used
        if isinstance(obj, str):
            if ARRAY_PLACEHOLDER in obj:
                used = True
                return obj.replace(ARRAY_PLACEHOLDER, value)
            return obj
        if isinstance(obj, list):
            return [fill(x) for x in obj]
        if isinstance(obj, dict):
            return {k: fill(v) for k, v in obj.items()}
        return obj

    out: dict[str, Any] = fill(params)
    if not used and line is not None and isinstance(out.get("argv"), list):
        out["argv"] = [*out["argv"], line]
    return out


def member_env(env: dict[str, str], name: str, member: Member, count: int) -> dict[str, str]:
    """A member's environment: the template's with its index, the array's name and size."""
    return {
        **env,
        ENV_ARRAY_INDEX: str(member[0]),
        ENV_ARRAY_NAME: name,
        ENV_ARRAY_COUNT: str(count),
    }


class ArrayRequest:
    """A validated ``submit_array`` request: ``submit``, the petition every member is
    made from (its ``id`` is the array's name, or empty for the service to choose one);
    ``members``; ``limit``, at most that many members run at once (None: no limit)."""

    __slots__ = ("limit", "members", "submit")

    def __init__(self, submit: SubmitRequest, members: list[Member], limit: int | None) -> None:
        self.submit = submit
        self.members = members
        self.limit = limit

    @property
    def name(self) -> str:
        return self.submit.id or ""  # named by the client (arrayN) when the user gave none

    def __eq__(self, other: object) -> bool:
        return isinstance(other, ArrayRequest) and self.to_wire() == other.to_wire()

    __hash__ = None  # type: ignore[assignment]  # mutable

    def __repr__(self) -> str:
        return f"ArrayRequest({self.name!r}, {len(self.members)} members, limit={self.limit})"

    def to_wire(self) -> dict[str, Any]:
        return {
            "submit": self.submit.to_wire(),
            "members": [[index, line] for index, line in self.members],
            "limit": self.limit,
        }

    @classmethod
    def from_wire(cls, obj: dict[str, Any]) -> ArrayRequest:
        """Check every field; ValueError naming the bad one otherwise."""
        template = obj.get("submit")
        if not isinstance(template, dict):
            raise ValueError("'submit' must be the petition's fields")
        name = template.get("id") or ""
        # The template is checked as a petition; its ID is the array's name, if any.
        submit = SubmitRequest.from_wire({**template, "id": name or "array"})
        submit.id = name
        members = obj.get("members")
        if not isinstance(members, list) or not 1 <= len(members) <= MAX_ARRAY_MEMBERS:
            raise ValueError(f"'members' must be a list of 1 to {MAX_ARRAY_MEMBERS} members")
        checked: list[Member] = []
        seen: set[int] = set()
        for member in members:
            if not isinstance(member, list) or len(member) != 2:
                raise ValueError("each member must be [index, line or null]")
            index, line = member
            if (
                isinstance(index, bool)
                or not isinstance(index, int)
                or not 0 <= index <= (MAX_ARRAY_INDEX if line is None else 1 << 62)
            ):
                raise ValueError(f"a member's index must be a whole number >= 0, got {index!r}")
            if line is not None and (not isinstance(line, str) or "\0" in line):
                raise ValueError("a member's line must be a string without NUL")
            if index in seen:
                raise ValueError(f"index {index} is given twice")
            seen.add(index)
            checked.append((index, line))
        if name:
            check_member_ids(name, max(seen))
        limit = obj.get("limit")
        if limit is not None and (isinstance(limit, bool) or not isinstance(limit, int)
                                  or limit < 1):  # fmt: skip
            raise ValueError("'limit' must be a whole number >= 1 or null")
        return cls(submit, checked, limit)
