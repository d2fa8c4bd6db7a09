"""Moved: the manager of ``orcha serve`` lives in :mod:`orcha.service.kinds`, the service's
one kind registry. This name stays until every caller imports from there."""

from __future__ import annotations

from orcha.service.kinds import KindManager, KindPetition

__all__ = ["KindManager", "KindPetition"]
