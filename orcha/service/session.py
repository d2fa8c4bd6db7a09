"""Session: the service side of one orcha client connection.

One thread per session waits, with no timeout, on the client's socket and on the output
queues of the petitions the client is attached to. Requests are answered in order;
output is forwarded as it arrives. When the socket closes (the client exited, was killed,
or its terminal closed) every petition the session submitted and that has not ended is
cancelled, exactly as if the client had pressed Ctrl+C.
"""

from __future__ import annotations

import logging
import pickle
import selectors
import threading
from typing import TYPE_CHECKING, Any

from orcha.defaults import MAX_REQUEST_BYTES, OUTPUT_BUFFER_BYTES
from orcha.errors import PetitionError, wire_name
from orcha.protocol import messages
from orcha.protocol.messages import STDERR, STDOUT, SubmitRequest
from orcha.protocol.outputs import DISCARD, OutputQueue
from orcha.service.job import Detached, End, Job, Progress, Started

if TYPE_CHECKING:
    from multiprocessing.connection import Connection

    from orcha.service.service import Service

log = logging.getLogger("orcha.service.session")

#: Output of one petition is sent in frames of at most this many bytes.
_FRAME_LIMIT = 4 << 20


class Session:
    """Serves one client connection until it closes."""

    def __init__(self, conn: Connection, service: Service) -> None:
        self.conn = conn
        self.service = service
        self.attached: dict[int, Job] = {}
        self.submitted: set[Job] = set()  # not yet ended (the service discards ended ones)
        self.legacy_ended: list[Job] = []  # ended original-API jobs whose queue to purge
        self.subscribed: set[Job] = set()  # jobs this session follows or waits for
        self.closed = False
        self.idle = threading.Event()
        self.idle.set()
        self._next_handle = 1
        self._sel = selectors.DefaultSelector()
        # Frames the service pushes to this client (follow, wait, watch), sent in order by
        # this session's thread.
        self.mailbox = OutputQueue()

    def serve(self) -> None:
        self.service.session_opened(self)
        self._sel.register(self.conn.fileno(), selectors.EVENT_READ, None)
        self._sel.register(self.mailbox.fileno(), selectors.EVENT_READ, "mail")
        try:
            while True:
                for key, _ in self._sel.select():
                    if key.data is None:
                        self._read_request()
                    elif key.data == "mail":
                        for frame in self.mailbox.drain():
                            self.conn.send_bytes(frame)
                    else:
                        self._forward(*key.data)
        except (EOFError, OSError):
            pass  # the client went away
        finally:
            self._close()

    # -- requests ----------------------------------------------------------------------
    def _read_request(self) -> None:
        frame = self.conn.recv_bytes(MAX_REQUEST_BYTES)
        if frame[:1] == bytes((messages.LEGACY,)):
            answer = self._legacy(frame[1:])
        else:
            try:
                request = messages.decode(frame)
            except ValueError as e:
                log.warning("rejected a malformed request: %s", e)
                answer = messages.error_reply("?", "refused", f"malformed request: {e}")
            else:
                answer = self._dispatch(request)
        if answer:
            self.conn.send_bytes(answer)

    def _dispatch(self, request: dict[str, Any]) -> bytes:
        op = request.get("op")
        if op == "submit":
            return self._submit(request)
        if op == "cancel":
            return self._cancel(request)
        if op == "status":
            ids, states = request.get("ids", []), request.get("states", [])
            if not _strings(ids) or not _strings(states):
                return messages.error_reply(
                    "status", "refused", "'ids' and 'states' must be lists of strings"
                )
            return messages.reply("status", **self.service.status(ids, states))
        if op == "clean":
            older = request.get("older_than")
            if older is not None and (
                isinstance(older, bool) or not isinstance(older, (int, float)) or older < 0
            ):
                return messages.error_reply(
                    "clean", "refused", "'older_than' must be a number of seconds >= 0"
                )
            return messages.reply("clean", **self.service.clean(older))
        if op == "info":
            return messages.reply("info", **self.service.info())
        if op == "health":
            return messages.reply("health", **self.service.health())
        if op == "state":
            return self._state(request)
        if op == "kinds":
            return self._kinds(request)
        if op in ("wait", "follow", "watch"):
            ids = request.get("ids", [])
            if not _strings(ids):
                return _refuse(op, "'ids' must be a list of strings")
            if op == "wait":
                return messages.reply("wait", **self.service.wait_for(self, ids))
            if op == "watch":
                return messages.reply("watch", **self.service.watch(self, ids))
            return self._follow(ids)
        if op == "logs":
            return self._logs(request)
        if op == "group":
            return self._group(request)
        if op in ("pause", "resume"):
            return self._pause(op, request)
        legal = ", ".join(sorted(messages.OPS))
        return messages.error_reply(str(op), "refused", f"unknown operation {op!r} ({legal})")

    def _submit(self, request: dict[str, Any]) -> bytes:
        try:
            submit = SubmitRequest.from_wire(request)
        except ValueError as e:
            return messages.error_reply("submit", "refused", f"invalid petition: {e}")
        queue: Any = OutputQueue(max_bytes=OUTPUT_BUFFER_BYTES) if submit.attach else DISCARD
        try:
            job = self.service.submit(submit, queue, self)
        except PetitionError as e:
            queue.close()
            return messages.error_reply("submit", wire_name(e.exit_code), e.message)
        if not submit.attach:
            return messages.reply("submit", id=job.id, state=str(job.state))
        handle = self._attach(job, queue)
        return messages.reply("submit", handle=handle, id=job.id, state=str(job.state))

    def _group(self, request: dict[str, Any]) -> bytes:
        """{"op": "group"} lists groups; with "name", sets (or with "max_running": null
        removes) that group's limit."""
        from orcha.protocol.schedule import check_group

        if "name" not in request:
            return messages.reply("group", groups=self.service.scheduler.groups())
        try:
            name = check_group(request["name"])
        except ValueError as e:
            return _refuse("group", str(e))
        limit = request.get("max_running")
        if limit is not None and (isinstance(limit, bool) or not isinstance(limit, int)
                                  or limit < 1):  # fmt: skip
            return _refuse("group", "'max_running' must be an integer >= 1 or null")
        return messages.reply("group", **self.service.set_group(name, limit))

    def _pause(self, op: str, request: dict[str, Any]) -> bytes:
        from orcha.protocol.schedule import check_group

        ids, groups = request.get("ids", []), request.get("groups", [])
        if not _strings(ids) or not _strings(groups):
            return _refuse(op, "'ids' and 'groups' must be lists of strings")
        try:
            groups = [check_group(g) for g in groups]
        except ValueError as e:
            return _refuse(op, str(e))
        everything = request.get("all", False) is True
        if not (ids or groups or everything):
            return _refuse(op, "name petition IDs, groups, or all")
        answer = self.service.pause(
            ids, groups, everything, request.get("running", False) is True, op == "pause"
        )
        return messages.reply(op, **answer)

    def _state(self, request: dict[str, Any]) -> bytes:
        action, plugin, key = request.get("action"), request.get("plugin"), request.get("key")
        if action not in ("ls", "get", "set", "rm"):
            return _refuse("state", "'action' must be ls, get, set or rm")
        if not isinstance(plugin, str) or not plugin:
            return _refuse("state", "'plugin' must be a plugin name")
        if action != "ls":
            from orcha.service.plugin_state import check_key

            try:
                key = check_key(key)
            except ValueError as e:
                return _refuse("state", str(e))
        try:
            answer = self.service.state(action, plugin, key, request.get("value"))
        except PetitionError as e:
            return messages.error_reply("state", wire_name(e.exit_code), e.message)
        return messages.reply("state", **answer)

    def _kinds(self, request: dict[str, Any]) -> bytes:
        """{"op": "kinds"} lists templates; with "add" or "rm", changes one."""
        kinds = self.service.runtime_kinds
        action, name = request.get("action", "ls"), request.get("name")
        try:
            if action == "ls":
                return messages.reply("kinds", kinds=kinds.listing())
            if not isinstance(name, str) or not name:
                return _refuse("kinds", "'name' must be a kind name")
            if action == "add":
                parent, settings = request.get("from"), request.get("set", {})
                if not isinstance(parent, str) or not isinstance(settings, dict):
                    return _refuse("kinds", "'from' must be a kind and 'set' an object")
                return messages.reply("kinds", kind=kinds.add(name, parent, settings))
            if action == "rm":
                return messages.reply("kinds", removed=kinds.remove(name))
        except PetitionError as e:
            return messages.error_reply("kinds", wire_name(e.exit_code), e.message)
        return _refuse("kinds", "'action' must be ls, add or rm")

    def _legacy(self, payload: bytes) -> bytes:
        try:
            message = pickle.loads(payload)
            job = self.service.submit_message(message, self)
        except PetitionError as e:
            return messages.error_reply("send", wire_name(e.exit_code), e.message)
        except Exception as e:
            log.warning("rejected a malformed message: %s", e)
            return messages.error_reply("send", "refused", f"malformed message: {e}")
        self.submitted.add(job)
        return messages.reply("send", id=job.id, state=str(job.state))

    def _cancel(self, request: dict[str, Any]) -> bytes:
        if "ids" in request:  # orcha cancel ID... [--force]
            ids = request["ids"]
            if not _strings(ids) or not ids:
                return messages.error_reply(
                    "cancel", "refused", "'ids' must be a non-empty list of strings"
                )
            answer = self.service.cancel_ids(ids, bool(request.get("force")), self)
            return messages.reply("cancel", **answer)
        petition_id = request.get("id")
        job = self.service.scheduler.get(str(petition_id))
        if job is None:
            return messages.error_reply(
                "cancel", "refused", f"no queued or running petition has ID {petition_id!r}"
            )
        self.service.cancel(job, "cancelled by a client", by_client=job.session is self)
        return messages.reply("cancel", id=job.id)

    def new_handle(self) -> int:
        handle = self._next_handle
        self._next_handle += 1
        return handle

    def deliver(self, frame: bytes) -> None:
        """Queue a frame for this client (any thread)."""
        if not self.closed:
            self.mailbox.put(frame)

    def deliver_output(self, handle: int, stream: int, data: bytes) -> None:
        self.deliver(messages.output_frame(stream, handle, data))

    def _follow(self, ids: list[str]) -> bytes:
        """Reply with the handles first, then replay each log, then live output follows
        from the mailbox (the service subscribed us where the replay ends)."""
        from orcha.service.logs import read_log

        plan, missing = self.service.follow(self, ids)
        handles = {p["id"]: p["handle"] for p in plan}
        self.conn.send_bytes(messages.reply("follow", handles=handles, missing=missing))
        for p in plan:
            for stream, data in read_log(p["log_path"], p["end"]):
                self.conn.send_bytes(messages.output_frame(stream, p["handle"], data))
            if p["ended"] is not None:
                self.conn.send_bytes(
                    messages.encode({"event": "end", "handle": p["handle"], **p["ended"]})
                )
        return b""  # already answered

    def _logs(self, request: dict[str, Any]) -> bytes:
        petition_id, tail = request.get("id"), request.get("tail")
        if not isinstance(petition_id, str):
            return _refuse("logs", "'id' must be a string")
        if tail is not None and (isinstance(tail, bool) or not isinstance(tail, int) or tail < 0):
            return _refuse("logs", "'tail' must be a whole number >= 0")
        try:
            frames, record = self.service.logs(petition_id, tail)
        except PetitionError as e:
            return messages.error_reply("logs", wire_name(e.exit_code), e.message)
        for stream, data in frames:
            self.conn.send_bytes(messages.output_frame(stream, 0, data))
        return messages.reply("logs", state=record["state"], code=record["code"])

    # -- output ------------------------------------------------------------------------
    def _attach(self, job: Job, queue: OutputQueue) -> int:
        handle = self._next_handle
        self._next_handle += 1
        self.attached[handle] = job
        self.submitted.add(job)
        self.idle.clear()
        self._sel.register(queue.fileno(), selectors.EVENT_READ, (handle, job))
        return handle

    def _forward(self, handle: int, job: Job) -> None:
        queue: OutputQueue = job.queue
        frames: list[bytes] = []
        chunks: list[bytes] = []  # the run of same-stream data being coalesced
        tag, size = -1, 0

        def flush() -> None:
            nonlocal tag, chunks, size
            if chunks:
                frames.append(messages.output_frame(tag, handle, b"".join(chunks)))
            tag, chunks, size = -1, [], 0

        ended: Detached | End | None = None
        items = queue.drain()
        # Only the newest of the progress reports drained together is worth sending.
        last_progress = max((i for i, x in enumerate(items) if isinstance(x, Progress)),
                            default=-1)  # fmt: skip
        for index, item in enumerate(items):
            if isinstance(item, tuple) and len(item) == 2 and item[0] in (STDOUT, STDERR):
                stream, data = item
            elif isinstance(item, (bytes, bytearray)):
                stream, data = STDOUT, bytes(item)
            elif isinstance(item, str):
                stream, data = STDOUT, item.encode()
            else:
                flush()
                if isinstance(item, Progress):
                    if index == last_progress:
                        frames.append(messages.encode({
                            "event": "progress", "handle": handle, "id": job.id,
                            "value": item.value, "target": item.target, "unit": item.unit,
                        }))  # fmt: skip
                elif isinstance(item, Started):
                    frames.append(
                        messages.encode({"event": "started", "handle": handle, "id": job.id})
                    )
                elif isinstance(item, Detached):
                    ended = item
                    detached = {"event": "detached", "handle": handle, "id": job.id}
                    frames.append(messages.encode({**detached, "message": item.message}))
                elif isinstance(item, End):
                    ended = item
                    frames.append(
                        messages.encode(
                            {
                                "event": "end",
                                "handle": handle,
                                "id": job.id,
                                "state": str(item.state),
                                "code": item.code,
                                "message": item.message,
                                "by_client": item.by_client,
                                "outcome": item.outcome,
                            }
                        )
                    )
                continue
            if stream != tag or size + len(data) > _FRAME_LIMIT:
                flush()
                tag = stream
            chunks.append(data)
            size += len(data)
        flush()
        for frame in frames:
            self.conn.send_bytes(frame)
        if ended is not None:
            self._sel.unregister(queue.fileno())
            queue.close()
            del self.attached[handle]
            if not self.attached:
                self.idle.set()

    # -- end ---------------------------------------------------------------------------
    def _close(self) -> None:
        self.closed = True
        self._sel.close()
        self.mailbox.close()
        for job in list(self.attached.values()):
            job.queue.close()
        self.attached.clear()
        for job in list(self.submitted):
            self.service.cancel(job, "its client went away", by_client=True)
        self.service.session_closed(self)
        self.idle.set()


def _strings(value: Any) -> bool:
    return isinstance(value, list) and all(isinstance(v, str) for v in value)


def _refuse(op: str, message: str) -> bytes:
    return messages.error_reply(op, "refused", f"invalid request: {message}")
