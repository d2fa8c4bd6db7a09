"""Plugin predicates in one shape: ``(petition, machine) -> None | reason``.

Plugins of earlier releases return ``(petition) -> bool`` predicates; :func:`as_predicate`
adapts those (and checks the new ones), so the scheduler asks every predicate the same
way and always has a reason to show for a petition that waits.
"""

from __future__ import annotations

from time import monotonic
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from orcha.plugins.contract import LegacyPredicate, Predicate

__all__ = ["DEFAULT_REASON", "as_predicate", "reason_of"]

#: What a petition held back by a predicate that gives no reason waits for.
DEFAULT_REASON = "waiting for a plugin's predicate to hold"


def reason_of(answer: Any) -> str | None:
    """A predicate's answer read leniently: None or True fit; a non-empty string is the
    reason it waits; False or an empty string wait for :data:`DEFAULT_REASON`."""
    if answer is None or answer is True:
        return None
    if isinstance(answer, str) and answer:
        return answer
    return DEFAULT_REASON if not answer else None


class _Adapted:
    """A predicate of either shape, asked in the new one. While it is being asked,
    :attr:`since` says since when (``time.monotonic()``): the service asks under its
    scheduler's lock, so one that blocks holds up admission, and ``orcha health`` says
    which."""

    def __init__(self, fn: Any, takes_machine: bool) -> None:
        self.__wrapped__ = fn
        # Listings (orcha ls) name the plugin's own function, not this wrapper.
        self.__name__ = str(getattr(fn, "__name__", None) or type(fn).__name__)
        self._fn = fn
        self._takes_machine = takes_machine
        self.since: float | None = None

    def __call__(self, petition: Any, machine: Any = None) -> str | None:
        # One timestamp per call: it is asked for every petition that may start.
        self.since = monotonic()
        try:
            if self._takes_machine:
                return reason_of(self._fn(petition, machine))
            return reason_of(self._fn(petition))
        finally:
            self.since = None

    def __repr__(self) -> str:
        return f"<predicate {self.__name__}>"


def _takes_machine(fn: Any) -> bool:
    """Whether ``fn`` can be called with (petition, machine); else it is ``(petition)``."""
    import inspect

    try:
        signature = inspect.signature(fn)
    except (TypeError, ValueError):  # a builtin without a signature: the old shape
        return False
    try:
        signature.bind(None, None)
    except TypeError:
        return False
    return True


def as_predicate(fn: Predicate | LegacyPredicate) -> Predicate:
    """``fn`` asked as ``(petition, machine) -> None | reason``.

    A callable that takes two positional arguments is taken to have the new shape;
    one that takes one, the old ``(petition) -> bool``. Either way the answer is read by
    :func:`reason_of`. TypeError if ``fn`` is not callable or takes neither.
    """
    if isinstance(fn, _Adapted):
        return fn
    if not callable(fn):
        raise TypeError(f"{fn!r} (a predicate) is not callable")
    if _takes_machine(fn):
        return _Adapted(fn, True)
    import inspect

    try:
        inspect.signature(fn).bind(None)
    except TypeError:
        raise TypeError(
            f"predicate {getattr(fn, '__name__', fn)!r} must take (petition, machine) or (petition)"
        ) from None
    except ValueError:  # no signature to check: ask it and see
        pass
    return _Adapted(fn, False)
