"""The part of :mod:`selectors` that an attached client uses, on ``select.epoll``.

``orcha run`` waits on its connection, the signal wakeup pipe and stdin with a selector;
importing :mod:`selectors` (abstract base classes, a named tuple, ``math``,
``collections``) costs a client about 4 ms of start-up, more than the rest of its
round trip. This is the same epoll selector (what ``selectors.DefaultSelector`` is on
Linux) with the same behaviour for what the client calls: ``register`` (PermissionError
for a regular file or /dev/null, which epoll refuses), ``modify``, ``unregister``,
``select`` (timeouts rounded up to the millisecond; an error or hang-up counts as both
readable and writable) and use as a context manager.
"""

from __future__ import annotations

import select

TYPE_CHECKING = False  # typing is not imported at run time: it costs client start-up
if TYPE_CHECKING:
    from typing import Any

EVENT_READ = 1
EVENT_WRITE = 2


class SelectorKey:
    """What was registered: the file descriptor, its events and its data."""

    __slots__ = ("data", "events", "fd", "fileobj")

    def __init__(self, fileobj: int, events: int, data: Any) -> None:
        self.fileobj = self.fd = fileobj
        self.events = events
        self.data = data


def _epoll_mask(events: int) -> int:
    return (select.EPOLLIN if events & EVENT_READ else 0) | (
        select.EPOLLOUT if events & EVENT_WRITE else 0
    )


class DefaultSelector:
    """An epoll selector over file descriptors (ints)."""

    def __init__(self) -> None:
        self._epoll = select.epoll()
        self._keys: dict[int, SelectorKey] = {}

    def register(self, fileobj: int, events: int, data: Any = None) -> SelectorKey:
        """Watch ``fileobj`` for ``events``; KeyError if it is already watched."""
        if fileobj in self._keys:
            raise KeyError(f"{fileobj!r} is already registered")
        self._epoll.register(fileobj, _epoll_mask(events))
        key = self._keys[fileobj] = SelectorKey(fileobj, events, data)
        return key

    def unregister(self, fileobj: int) -> SelectorKey:
        """Stop watching ``fileobj``; KeyError if it is not watched."""
        key = self._keys.pop(fileobj)
        try:
            self._epoll.unregister(fileobj)
        except OSError:
            pass  # closed meanwhile: epoll forgot it already
        return key

    def modify(self, fileobj: int, events: int, data: Any = None) -> SelectorKey:
        """Watch ``fileobj`` for ``events`` now, with ``data``."""
        key = self._keys[fileobj]
        if events != key.events:
            self._epoll.modify(fileobj, _epoll_mask(events))
        key.events, key.data = events, data
        return key

    def select(self, timeout: float | None = None) -> list[tuple[SelectorKey, int]]:
        """The watched descriptors that are ready, with what they are ready for: waits
        up to ``timeout`` seconds (None: until one is; 0 or less: not at all)."""
        if timeout is None:
            wait = -1.0
        elif timeout <= 0:
            wait = 0.0
        else:  # epoll counts milliseconds: round up, never wake before the timeout
            wait = -(-timeout * 1e3 // 1) * 1e-3
        ready: list[tuple[SelectorKey, int]] = []
        try:
            polled = self._epoll.poll(wait, max(len(self._keys), 1))
        except InterruptedError:  # as selectors: a signal woke it (PEP 475 retries first)
            return ready
        for fd, event in polled:
            events = 0
            if event & ~select.EPOLLIN:
                events |= EVENT_WRITE
            if event & ~select.EPOLLOUT:
                events |= EVENT_READ
            key = self._keys.get(fd)
            if key is not None:
                ready.append((key, events & key.events))
        return ready

    def close(self) -> None:
        self._epoll.close()
        self._keys.clear()

    def __enter__(self) -> DefaultSelector:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


#: The name attach's annotations use for a selector (as in :mod:`selectors`).
BaseSelector = DefaultSelector
