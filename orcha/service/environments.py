"""Environments, stored once: petitions from one shell (and every member of an array)
carry the same environment, several KB each, so the records keep each distinct one once
(the ``environments`` table, addressed by its content's digest) and the service keeps
one copy of it in memory.

A petition's environment is split into its *base* (shared) and the few variables that
differ from petition to petition (:data:`PER_PETITION`: an array member's index, name
and size). A record names its base (``env_id``) and keeps only the rest in its ``env``
column; records written before this existed keep their whole environment there (``env_id``
NULL), and identical ones are still shared in memory once read
(:meth:`EnvironmentTable.decode`).
"""

from __future__ import annotations

import hashlib
import json
import sqlite3
import threading
from collections.abc import Callable, Iterator, Mapping
from typing import Any

from orcha.defaults import ENV_ARRAY_COUNT, ENV_ARRAY_INDEX, ENV_ARRAY_NAME, ENV_CACHE_SIZE

#: Variables kept with each record rather than in the shared base: they differ between
#: petitions that otherwise share their environment (an array's members).
PER_PETITION = frozenset({ENV_ARRAY_INDEX, ENV_ARRAY_NAME, ENV_ARRAY_COUNT})

_NOTHING: dict[str, str] = {}


class Environment(Mapping[str, str]):
    """A petition's environment: a shared ``base`` with its ``own`` variables over it.
    Read-only (copy it with ``dict(env)`` to change it)."""

    __slots__ = ("base", "own")

    def __init__(self, base: Mapping[str, str], own: Mapping[str, str]) -> None:
        self.base = base
        self.own = own

    def __getitem__(self, key: str) -> str:
        own = self.own
        return own[key] if key in own else self.base[key]

    def __contains__(self, key: object) -> bool:
        return key in self.own or key in self.base

    def __iter__(self) -> Iterator[str]:
        yield from self.base
        for key in self.own:
            if key not in self.base:
                yield key

    def __len__(self) -> int:
        return len(self.base) + sum(1 for key in self.own if key not in self.base)

    def __repr__(self) -> str:
        return f"Environment({len(self)} variables)"


def split(env: Mapping[str, str]) -> tuple[Mapping[str, str], dict[str, str]]:
    """(the shared base of ``env``, its per-petition variables)."""
    if isinstance(env, Environment):
        return env.base, dict(env.own)
    if not PER_PETITION.intersection(env):
        return env, {}
    own = {k: v for k, v in env.items() if k in PER_PETITION}
    return {k: v for k, v in env.items() if k not in PER_PETITION}, own


def joined(base: Mapping[str, str], own: Mapping[str, str]) -> Mapping[str, str]:
    """``base`` with ``own`` over it, sharing ``base`` (no copy)."""
    return Environment(base, own) if own else base


def member_environment(env: Mapping[str, str], name: str, index: int, count: str) -> dict[str, str]:
    """An array member's environment (as :func:`orcha.protocol.arrays.member_env`): the
    array's, shared, with the member's index, the array's name and size over it (typed
    as the dict a request carries; it is read-only)."""
    own = {ENV_ARRAY_INDEX: str(index), ENV_ARRAY_NAME: name, ENV_ARRAY_COUNT: count}
    return Environment(env, own)  # type: ignore[return-value]


class EnvironmentTable:
    """The ``environments`` table and the service's one copy of each base in memory.
    Thread-safe. The caches are bounded (:data:`~orcha.defaults.ENV_CACHE_SIZE`): many
    different environments share nothing anyway."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._ids: dict[str, int] = {}  # a base's canonical JSON -> its row id (committed)
        self._bases: dict[int, Mapping[str, str]] = {}  # row id -> the base
        self._texts: dict[str, Mapping[str, str]] = {}  # whole env JSON (old rows) -> env
        self._last: tuple[Mapping[str, str], str] | None = None  # the last base, its JSON

    def forget(self) -> None:
        """Drop the caches (rows may have been deleted)."""
        with self._lock:
            self._ids.clear()
            self._bases.clear()
            self._texts.clear()

    # -- writing (on the writing connection, inside the caller's transaction) -------------
    def store(
        self, db: sqlite3.Connection, env: Mapping[str, str], new: dict[str, int]
    ) -> tuple[int, str]:
        """(the id of ``env``'s base, inserted if new; the JSON of its own variables).
        ``new`` collects the ids added by this transaction: :meth:`committed` caches
        them once it commits (a rollback must not leave an id that does not exist)."""
        base, own = split(env)
        last = self._last  # an array's members share one base: its JSON once
        if last is not None and last[0] is base:
            text = last[1]
        else:
            text = json.dumps(base, sort_keys=True, separators=(",", ":"))
            self._last = (base, text)
        with self._lock:
            env_id = self._ids.get(text)
        if env_id is None:
            env_id = new.get(text)
        if env_id is None:
            digest = hashlib.sha256(text.encode()).hexdigest()
            db.execute(
                "INSERT OR IGNORE INTO environments (digest, env) VALUES (?, ?)", (digest, text)
            )
            env_id = int(
                db.execute("SELECT id FROM environments WHERE digest = ?", (digest,)).fetchone()[0]
            )
            new[text] = env_id
        return env_id, json.dumps(own) if own else "{}"

    def committed(self, new: dict[str, int]) -> None:
        with self._lock:
            if len(self._ids) + len(new) > ENV_CACHE_SIZE:
                self._ids.clear()
            self._ids.update(new)

    # -- reading ------------------------------------------------------------------------
    def decode(
        self, env_id: int | None, text: str, load: Callable[[int], str | None]
    ) -> Mapping[str, str]:
        """A record's environment from its ``env_id`` and ``env`` column, sharing the
        base (and, for a record without a base, an identical whole environment);
        ``load(env_id)``: the base's JSON from the database, if it is not in memory."""
        if env_id is None:
            with self._lock:
                env = self._texts.get(text)
            if env is None:
                env = json.loads(text)
                with self._lock:
                    if len(self._texts) >= ENV_CACHE_SIZE:
                        self._texts.clear()
                    env = self._texts.setdefault(text, env)
            return env
        own = json.loads(text) if text != "{}" else _NOTHING
        return joined(self.base(env_id, load), own)

    def base(self, env_id: int, load: Callable[[int], str | None]) -> Mapping[str, str]:
        with self._lock:
            base = self._bases.get(env_id)
        if base is not None:
            return base
        text = load(env_id)
        loaded: dict[str, Any] = json.loads(text) if text else {}
        with self._lock:
            if len(self._bases) >= ENV_CACHE_SIZE:
                self._bases.clear()
            return self._bases.setdefault(env_id, loaded)
