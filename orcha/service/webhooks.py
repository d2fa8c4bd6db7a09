"""Webhooks: event envelopes POSTed as JSON to HTTP receivers, off the scheduler's threads.

``--notify URL`` on a petition, ``notify:`` in the configuration file for all. Each POST
has a short timeout and up to :data:`~orcha.defaults.WEBHOOK_ATTEMPTS` tries with
growing pauses; what finally fails is logged and reported through ``failed(job,
message)`` (``orcha status`` shows it). With a secret (``notify_secret``, or a webhook's
own ``secret``), each body is signed: header ``X-Orcha-Signature-256: sha256=<hex
HMAC-SHA256 of the body>`` (and the same in GitHub's ``X-Hub-Signature-256``);
``X-Orcha-Delivery`` is unique per delivery (kept on its retries) and the body's
``timestamp`` is signed with it, so a receiver can refuse replays. The secret is never
logged.

Each receiver (URL) has its own queue, served in order by one thread at a time of a
small pool (:data:`~orcha.defaults.WEBHOOK_THREADS`, started on demand, ended when idle):
a slow or failing receiver holds up its own deliveries only, never another's. All the
queues together hold at most :data:`~orcha.defaults.DELIVERY_QUEUE` deliveries; beyond,
the oldest of the longest queue is dropped (and logged) rather than growing the
service's memory.

Redirects: a 307 or 308 is followed with the same POST and body, at most
:data:`~orcha.defaults.WEBHOOK_REDIRECTS` hops; a 301, 302 or 303 (which HTTP clients
follow as a GET without the body: the receiver would never get the event) is a
delivery error naming where it pointed, not tried again.
"""

from __future__ import annotations

import collections
import functools
import hashlib
import hmac
import json
import logging
import os
import threading
from collections.abc import Callable
from typing import Any

from orcha.defaults import (
    DEFAULT_EVENTS,
    DELIVERY_QUEUE,
    WEBHOOK_ATTEMPTS,
    WEBHOOK_BACKOFF,
    WEBHOOK_DELIVERY_HEADER,
    WEBHOOK_EVENT_HEADER,
    WEBHOOK_GITHUB_SIGNATURE_HEADER,
    WEBHOOK_IDLE_SECONDS,
    WEBHOOK_REDIRECTS,
    WEBHOOK_SIGNATURE_HEADER,
    WEBHOOK_THREADS,
    WEBHOOK_TIMEOUT,
)

log = logging.getLogger("orcha.service.webhooks")


class Redirected(OSError):
    """A receiver answered with a redirect a POST does not follow (301, 302, 303)."""


class _Receivers:
    """Deliveries queued per receiver URL, served by a bounded pool of daemon threads:
    each URL's in order, one at a time; different URLs at the same time."""

    def __init__(self, threads: int = WEBHOOK_THREADS, limit: int = DELIVERY_QUEUE) -> None:
        self._max_threads = threads
        self._limit = limit
        self._cond = threading.Condition()
        # URL -> its deliveries not started yet; a URL is here while it has any, or
        # while a thread delivers to it.
        self._queues: dict[str, collections.deque[Callable[[], None]]] = {}
        self._ready: collections.deque[str] = collections.deque()  # queued, no thread on it
        self._busy: set[str] = set()  # a thread is delivering to these
        self._queued = 0  # deliveries in all the queues
        self._threads = 0
        self._waiting = 0  # threads waiting for work
        self.dropped: collections.Counter[str] = collections.Counter()

    def put(self, url: str, task: Callable[[], None]) -> None:
        with self._cond:
            if self._queued >= self._limit:
                self._drop_oldest()
            queue = self._queues.setdefault(url, collections.deque())
            queue.append(task)
            self._queued += 1
            if url not in self._busy and len(queue) == 1:
                self._ready.append(url)
            if self._waiting < len(self._ready) and self._threads < self._max_threads:
                self._threads += 1
                threading.Thread(target=self._loop, name="webhooks", daemon=True).start()
            self._cond.notify()

    def _drop_oldest(self) -> None:
        # The longest queue is most likely the receiver too slow for its events.
        url = max((u for u, q in self._queues.items() if q), key=lambda u: len(self._queues[u]))
        self._queues[url].popleft()
        self._queued -= 1
        if not self._queues[url] and url not in self._busy:
            del self._queues[url]
            self._ready.remove(url)
        self.dropped[url] += 1
        dropped = sum(self.dropped.values())
        if dropped in (1, 10, 100) or dropped % 1000 == 0:
            log.warning("webhooks: %d deliveries dropped, %d of them to %s (receivers too "
                        "slow)", dropped, self.dropped[url], url)  # fmt: skip

    def _loop(self) -> None:
        while True:
            with self._cond:
                self._waiting += 1
                # Ends when idle: a thread per receiver stays only while there is work.
                self._cond.wait_for(lambda: bool(self._ready), WEBHOOK_IDLE_SECONDS)
                self._waiting -= 1
                if not self._ready:
                    self._threads -= 1
                    return
                url = self._ready.popleft()
                self._busy.add(url)
                task = self._queues[url].popleft()
                self._queued -= 1
            try:
                task()
            except Exception:
                log.exception("webhooks: a delivery to %s failed", url)
            finally:
                with self._cond:
                    self._busy.discard(url)
                    if self._queues[url]:
                        self._ready.append(url)  # behind the others: each gets its turn
                    else:
                        del self._queues[url]
                    self._cond.notify_all()

    def pending(self) -> dict[str, int]:
        """URL -> deliveries not done yet (queued, or being tried)."""
        with self._cond:
            return {url: len(q) + (url in self._busy) for url, q in self._queues.items()}

    def idle(self, timeout: float) -> bool:
        """Wait until every delivery is done; False if some are not within ``timeout``."""
        with self._cond:
            return self._cond.wait_for(lambda: not self._queues, max(0.0, timeout))


class Webhooks:
    """POSTs events to URLs, each URL's in order, off the scheduler's threads."""

    def __init__(
        self,
        everyone: list[dict[str, Any]] | None = None,
        failed: Callable[[Any, str], None] | None = None,
        post: Callable[[str, bytes, float, dict[str, str]], None] | None = None,
        backoff: float = WEBHOOK_BACKOFF,
        secret: bytes | None = None,
        threads: int = WEBHOOK_THREADS,
    ) -> None:
        """``everyone``: [{"url", "events", "secret"}] for every petition (the
        configuration; ``secret`` optional); ``failed(job, message)``: told when a
        delivery finally fails; ``post(url, body, timeout, headers)``: the HTTP seam
        (tests replace it); ``secret``: signs what goes to a petition's own URLs;
        ``threads``: how many receivers are delivered to at the same time at most."""
        self.everyone = everyone or []
        self.secret = secret
        self._failed = failed
        self._post = post or _post
        self._backoff = backoff
        self._receivers = _Receivers(threads)
        self._hurry = threading.Event()  # the service is stopping: retry without pauses

    def event(self, job: Any, envelope: dict[str, Any]) -> None:
        """Queue ``envelope`` for every URL that wants its event."""
        event = envelope["event"]
        targets = {t["url"]: t.get("secret") for t in self.everyone if event in t["events"]}
        if event in DEFAULT_EVENTS or "." in event:  # state changes and custom events
            for url in job.schedule.notify:
                targets.setdefault(url, self.secret)
        if not targets:
            return
        body = json.dumps(envelope).encode()
        for url, secret in targets.items():
            headers = signed(body, secret, event)
            self._receivers.put(
                url, functools.partial(self._deliver, job, url, body, event, headers)
            )

    def _deliver(
        self, job: Any, url: str, body: bytes, event: str, headers: dict[str, str]
    ) -> None:
        error, tries = "", 0
        for attempt in range(WEBHOOK_ATTEMPTS):
            if attempt:
                self._hurry.wait(self._backoff * (2 ** (attempt - 1)))
            tries += 1
            try:
                self._post(url, body, WEBHOOK_TIMEOUT, headers)
                return
            except Redirected as e:  # it would say the same again: no use trying
                error = str(e)
                break
            except Exception as e:
                error = f"{type(e).__name__}: {e}"
        tried = f"{tries} tries" if tries > 1 else "1 try"
        message = f"webhook {url} failed for event {event} ({tried}): {error}"
        log.warning("petition %s: %s", job.id, message)
        if self._failed is not None:
            self._failed(job, message)

    def idle(self, timeout: float) -> bool:
        """Wait until every queued delivery is done; False if some are not in time."""
        return self._receivers.idle(timeout)

    def pending(self) -> dict[str, int]:
        """URL -> deliveries not done yet (queued, or being tried)."""
        return self._receivers.pending()

    def hurry(self) -> None:
        """The service is stopping: what is queued is tried without the pauses between
        tries, so that a receiver that is down holds the stop up for no more than the
        tries themselves take (a refused connection: none)."""
        self._hurry.set()


def signed(body: bytes, secret: bytes | None, event: str) -> dict[str, str]:
    """The headers of one delivery of ``body``: its event, a delivery ID, and with a
    ``secret`` its signature (``sha256=`` and the hex HMAC-SHA256 of the body)."""
    headers = {WEBHOOK_EVENT_HEADER: event, WEBHOOK_DELIVERY_HEADER: os.urandom(16).hex()}
    if secret:
        signature = "sha256=" + hmac.new(secret, body, hashlib.sha256).hexdigest()
        headers[WEBHOOK_SIGNATURE_HEADER] = signature
        headers[WEBHOOK_GITHUB_SIGNATURE_HEADER] = signature
    return headers


def _post(url: str, body: bytes, timeout: float, headers: dict[str, str]) -> None:
    """POST ``body`` as JSON; raises on a connection error or a non-2xx answer
    (Redirected on a 301, 302 or 303; a 307 or 308 is followed, the same POST)."""
    import urllib.error
    import urllib.request

    request = urllib.request.Request(
        url, data=body, method="POST",
        headers={"Content-Type": "application/json", "User-Agent": "orcha", **headers},
    )  # fmt: skip
    opener = urllib.request.build_opener(_post_redirects())
    try:
        answer = opener.open(request, timeout=timeout)  # URLs: http(s) only
    except urllib.error.HTTPError as e:
        if 300 <= e.code < 400:  # urllib's words for this take three lines
            raise Redirected(f"HTTP {e.code}: redirected more than {WEBHOOK_REDIRECTS} times "
                             f"or in a loop (last to {e.url})") from None  # fmt: skip
        raise
    with answer:
        if not 200 <= answer.status < 300:
            raise OSError(f"HTTP {answer.status}")


def _post_redirects() -> Any:
    """The redirect handler of webhook POSTs (built when one is sent: urllib is imported
    by the first delivery, not by the service's start)."""
    import urllib.request

    class PostRedirects(urllib.request.HTTPRedirectHandler):
        max_redirections = WEBHOOK_REDIRECTS

        def redirect_request(
            self, req: Any, fp: Any, code: int, msg: str, headers: Any, newurl: str
        ) -> Any:
            if code not in (307, 308):
                # urllib would send a GET without the body, which receivers refuse
                # with an error of their own ("HTTP Error 501"): say what happened.
                raise Redirected(
                    f"HTTP {code}: redirected to {newurl}; give that URL to --notify (or notify:)"
                )
            if not newurl.startswith(("http://", "https://")):
                raise Redirected(f"HTTP {code}: redirected to {newurl}, not an http(s) URL")
            # The same POST: its body, and the headers it was given (its signature and
            # delivery ID among them), not those of the first connection (Host).
            return urllib.request.Request(
                newurl, data=req.data, headers=req.headers, method="POST",
                origin_req_host=req.origin_req_host, unverifiable=True,
            )  # fmt: skip

    return PostRedirects
