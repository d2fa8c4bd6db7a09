"""ServiceContext: the service's implementation of the context a kind's ``run`` receives.

The contract (what a kind may rely on) is :class:`orcha.plugins.contract.Context`; this
is how the service keeps it, on top of the petition's job and the machine's process
control.
"""

from __future__ import annotations

import math
import subprocess
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from orcha.defaults import (
    ENV_ATTEMPT,
    ENV_GPUS,
    ENV_PETITION_ID,
    ENV_PETITION_TOKEN,
    PIPE_CHUNK,
)
from orcha.plugins.contract import Context
from orcha.protocol.messages import STDERR, STDOUT
from orcha.service.capture import is_ordered
from orcha.service.environments import Environment
from orcha.service.machines import LocalMachine
from orcha.service.pumping import Pump, pump_ordered
from orcha.text import escaped

__all__ = ["Context", "ServiceContext"]  # Context: the contract, for earlier type hints

if TYPE_CHECKING:
    from orcha.model import ActionCallbackT
    from orcha.service.children import ServiceChild
    from orcha.service.job import Job
    from orcha.service.machines import Machine


class ServiceContext:
    """Handed to :meth:`Kind.run`: the petition's parameters and its ways to act
    (:class:`orcha.plugins.contract.Context`, implemented)."""

    def __init__(self, job: Job, register: ActionCallbackT, machine: Machine) -> None:
        """``machine``: where the petition runs (its processes are spawned there)."""
        petition: Any = job.petition
        self.id: str = job.id
        self.params: dict[str, Any] = petition.params
        self.cwd: str = petition.cwd
        self.env: dict[str, str] = petition.env
        self.cancelled = job.cancel_event  # set on cancel, or when this attempt times out
        self.attempt: int = job.attempt
        self.gpus: tuple[str, ...] = job.gpu_ids
        self.local: bool = isinstance(machine, LocalMachine)
        self._job = job
        self._register = register
        self._machine = machine
        events: Any = job.events
        # With GPUs in the inventory, a petition that asked for none sees none.
        self._has_gpus = bool(getattr(getattr(events, "scheduler", None), "inventory", ()))

    def _live(self) -> None:
        """PetitionError once the petition has ended without its action (abandoned after
        it ignored a stop): that action's thread may run on, but nothing it does reaches
        the ended petition, its record or its client, and it starts nothing more."""
        if self._job.abandoned:
            from orcha.errors import ExitCode, PetitionError

            raise PetitionError(
                f"petition {self.id} has ended: its action ignored a stop and was abandoned",
                ExitCode.CANCELLED,
            )

    def write(self, data: str | bytes) -> None:
        """Send ``data`` to the client's stdout."""
        self._live()
        self._job.emit(STDOUT, data.encode() if isinstance(data, str) else data)

    def write_err(self, data: str | bytes) -> None:
        """Send ``data`` to the client's stderr."""
        self._live()
        self._job.emit(STDERR, data.encode() if isinstance(data, str) else data)

    def progress(
        self, value: float | None = None, target: float | None = None, unit: str = ""
    ) -> None:
        """Report how far the petition has come: ``value`` of ``target`` ``unit`` (e.g.
        ``progress(3, 10, "files")``); no value means "working, amount unknown". The
        client shows a progress bar on a terminal, plain lines otherwise."""
        for name, number in (("value", value), ("target", target)):
            if number is not None and (
                isinstance(number, bool) or not isinstance(number, (int, float))
                or not math.isfinite(number)
            ):  # fmt: skip
                raise ValueError(f"progress {name} must be a finite number or None")
        self._live()
        self._job.report_progress(value, target, str(unit))

    def event(self, name: str, data: dict[str, Any] | None = None) -> None:
        """Emit a custom event, ``KIND.NAME`` in the usual envelope, to watchers
        (``orcha watch``) and webhooks (``--notify`` gets every custom event of its
        petition). ``KIND`` is the kind that runs: a runtime kind's parent, whose code
        emits the event (the envelope's ``kind`` is the runtime kind's name). ValueError
        if ``name`` is not a short word or ``data`` not JSON data."""
        import json

        if not isinstance(name, str) or not name.isidentifier() or len(name) > 64:
            raise ValueError("an event name is a word of letters, digits and '_'")
        try:
            json.dumps(data or {}, allow_nan=False)
        except (TypeError, ValueError) as e:
            raise ValueError(f"event data must be JSON data: {e}") from None
        self._live()
        events = self._job.events
        if events is not None:
            # Named after the kind whose code emits it, so that a notify: entry listing
            # "goodevent.custom" hears it from every runtime kind made from goodevent.
            kind = getattr(self._job.petition, "kind", "") or self._job.kind or "petition"
            events.watch_event(self._job, f"{kind}.{name}", data or {})

    def set_outcome(self, value: Any) -> None:
        """Record the petition's outcome: JSON data the client prints when it ends and
        ``orcha status`` shows. ValueError if it is not JSON data."""
        import json

        try:
            json.dumps(value, allow_nan=False)
        except (TypeError, ValueError) as e:
            raise ValueError(f"an outcome must be JSON data: {e}") from None
        self._live()
        self._job.outcome = value

    def fail(self, message: str) -> None:
        """Record why the petition failed; the client prints it as one line."""
        self._live()
        self._job.message = escaped(message)  # a command's name may hold any bytes

    def sleep(self, seconds: float) -> bool:
        """Wait ``seconds``; True (at once) if the petition was cancelled meanwhile."""
        from orcha.units import wait_event

        return wait_event(self.cancelled, seconds)

    def spawn(self, argv: Sequence[str]) -> subprocess.Popen[bytes]:
        """Start ``argv`` in its own session, in the petition's cwd and environment (plus
        ``ORCHA_PETITION_ID``, ``ORCHA_ATTEMPT``, its GPUs as ``ORCHA_GPUS`` and
        ``CUDA_VISIBLE_DEVICES``, and the token that lets cancellation find the whole
        tree). Its stdin is what the attached client sends (``orcha run`` with piped
        input) for the petition's first process, /dev/null otherwise."""
        self._live()
        own = {
            ENV_PETITION_TOKEN: self._job.token,
            ENV_PETITION_ID: self.id,
            ENV_ATTEMPT: str(self.attempt),
        }
        if self.gpus or self._job.schedule.gpus or self._has_gpus:
            own[ENV_GPUS] = own["CUDA_VISIBLE_DEVICES"] = ",".join(self.gpus)
        # Over the petition's environment, not a copy of it: an array's members share
        # one base, which the machine may have encoded once for all (native.py).
        env = Environment(self.env, own)
        # The input its attached client sends goes to its first process only.
        feed = self._job.stdin
        fed = feed is not None and not feed.used and not feed.closed
        proc = self._machine.spawn(
            argv, cwd=self.cwd, env=env, pipe_size=PIPE_CHUNK, stdin=fed,
            ordered=self._job.schedule.ordered,
        )  # fmt: skip
        self._register(proc.pid)
        if fed and feed is not None and proc.stdin is not None:
            feed.attach(proc.stdin)
            proc.stdin = None  # the feed's now: Popen.wait() or communicate() must not close it
        return proc

    def pump(self, proc: subprocess.Popen[bytes]) -> int:
        """Stream ``proc``'s stdout and stderr to the client until it has exited and its
        pipes are closed, or :data:`~orcha.defaults.DRAIN_SECONDS` after it exited (a
        process it left running may hold them open: that one is stopped once the action
        returns); return its exit code (128+N if a signal N killed it)."""
        if is_ordered(proc):
            return pump_ordered(self._job, proc, self._machine, attempt=True)
        return Pump(self._job, proc, self._machine).run()

    def pump_attempt(self, proc: subprocess.Popen[bytes]) -> int:
        """As :meth:`pump`, for the process that is the whole attempt (a kind's
        ``start``): once it has exited on its own, a cancel finds its outcome decided
        (``Job.exit_probe``), as in the petition loop."""
        if is_ordered(proc):
            return pump_ordered(self._job, proc, self._machine, attempt=True)
        pump = Pump(self._job, proc, self._machine)
        self._job.exit_probe = pump.has_exited
        return pump.run()

    def submit(
        self,
        kind: str,
        params: dict[str, Any] | None = None,
        *,
        id: str | None = None,
        **requests: Any,
    ) -> ServiceChild:
        """Submit a child petition of ``kind`` (see
        :meth:`orcha.plugins.contract.Context.submit`); its handle, at once.
        PetitionError if it is refused."""
        self._live()
        family = self._job.family
        if family is None:
            from orcha.errors import ExitCode, PetitionError

            raise PetitionError(
                "only a running petition of an orcha kind may submit children", ExitCode.REFUSED
            )
        return family.submit(kind, params, id, requests)
