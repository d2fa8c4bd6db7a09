"""Moved: runtime kinds (templates) live in :mod:`orcha.service.kinds`, the service's one
kind registry. This name stays until every caller imports from there."""

from __future__ import annotations

from orcha.service.kinds import STATE_KEY, RuntimeKinds

__all__ = ["STATE_KEY", "RuntimeKinds"]
