"""Loans: a parent blocked on its children lends them its reservation.

A running petition may submit child petitions (:meth:`orcha.plugins.contract.Context.submit`)
and wait for them. Children go through the same queue and predicates as every petition,
so if parents fill every slot and wait on children, no child could ever start: a
deadlock. The rule that prevents it:

* While a parent is *blocked* on its children (inside ``Child.wait()`` or
  ``Child.output()`` with nothing to read), it *lends* its reservation (CPU slots,
  memory, GPUs) on its machine to its own children.
* One child at a time runs in the loan: the first of its waiting children, in queue
  order, that is not held (pause, group limit, dependencies) and asks no more than the
  parent holds (CPUs, memory, GPUs: it gets the parent's first GPUs); the plugins'
  predicates must hold for it on the parent's machine. It starts ahead of every other
  petition (the resources are the parent's, no one else's). Other children still start
  in free resources as usual.
* The loan ends when the parent resumes. A child already running in it finishes in it
  (until then the parent and it share the parent's reservation); if the parent ends
  first, the child keeps what it borrowed as its own reservation.

This module is the bookkeeping (pure, under the scheduler's lock); the scheduler
applies it when it walks the queue (:class:`orcha.service.scheduler.Scheduler`).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING

from orcha.service import predicates as preds

if TYPE_CHECKING:
    from orcha.service.explain import Rules
    from orcha.service.job import Job
    from orcha.service.machines import Machine
    from orcha.service.petition_queue import PetitionQueue
    from orcha.service.queued import Waiting
    from orcha.service.scheduler_lock import SchedulerLock


class Loan:
    """What one parent lends: open while ``depth`` > 0 (threads of the parent blocked on
    children); ``borrower`` is the child running in it, if any."""

    __slots__ = ("borrower", "depth", "parent")

    def __init__(self, parent: Job) -> None:
        self.parent = parent
        self.depth = 0
        self.borrower: Job | None = None

    @property
    def open(self) -> bool:
        """Whether a waiting child may start in it now."""
        return self.depth > 0 and self.borrower is None


class Loans:
    """The loans of one scheduler and the waiting children they may go to. Not
    thread-safe: the scheduler's lock guards it."""

    def __init__(self) -> None:
        self._loans: dict[int, Loan] = {}  # parent seq -> its loan
        self._children: dict[int, dict[int, Job]] = {}  # parent seq -> waiting children
        self._borrowed: dict[int, Loan] = {}  # child seq -> the loan it runs in

    # -- the waiting children --------------------------------------------------------------
    def queued(self, job: Waiting) -> None:
        """``job`` waits (a child: its parent's loan may go to it)."""
        parent = job.parent
        if parent is not None:
            # A child is never queued compactly (orcha.service.queued): it is a Job.
            self._children.setdefault(parent.seq, {})[job.seq] = job  # type: ignore[assignment]

    def unqueued(self, job: Waiting) -> None:
        """``job`` waits no more (started, cancelled or failed)."""
        parent = job.parent
        if parent is not None:
            children = self._children.get(parent.seq)
            if children is not None:
                children.pop(job.seq, None)
                if not children:
                    del self._children[parent.seq]

    # -- lending -----------------------------------------------------------------------------
    def lend(self, parent: Job) -> bool:
        """``parent`` blocks on its children; True if that opened its loan (an admission
        walk may start one of them now)."""
        loan = self._loans.get(parent.seq)
        if loan is None:
            loan = self._loans[parent.seq] = Loan(parent)
        loan.depth += 1
        return loan.open and parent.seq in self._children

    def end(self, parent: Job) -> None:
        """``parent`` resumes (one blocked thread of it does)."""
        loan = self._loans.get(parent.seq)
        if loan is None:
            return
        loan.depth = max(0, loan.depth - 1)
        if loan.depth == 0 and loan.borrower is None:
            del self._loans[parent.seq]

    def offers(self) -> Iterator[tuple[Loan, list[Job]]]:
        """Each open loan with the waiting children it may go to, in queue order (their
        petitions' ranks)."""
        for seq, loan in list(self._loans.items()):
            children = self._children.get(seq)
            if loan.open and children:
                yield loan, sorted(children.values(), key=lambda j: j.petition.rank)

    def borrow(self, loan: Loan, child: Job) -> tuple[str, ...]:
        """``child`` starts in ``loan``; returns the GPUs it gets (the parent's first)."""
        loan.borrower = child
        self._borrowed[child.seq] = loan
        return tuple(loan.parent.gpu_ids[: child.schedule.gpus])

    def returned(self, child: Job) -> bool:
        """``child`` ended; True if it ran in a loan (its parent still holds the
        resources, so there is nothing to release)."""
        loan = self._borrowed.pop(child.seq, None)
        if loan is None:
            return False  # its own reservation (or it kept what its ended parent lent)
        loan.borrower = None
        if loan.depth == 0:
            self._loans.pop(loan.parent.seq, None)
        return True

    def closed(self, parent: Job) -> Job | None:
        """``parent`` ended: its loan goes; returns the child still running in it (which
        keeps what it borrowed), or None."""
        loan = self._loans.pop(parent.seq, None)
        if loan is None or loan.borrower is None:
            return None
        borrower, loan.borrower = loan.borrower, None
        self._borrowed.pop(borrower.seq, None)
        return borrower

    def lending(self, parent: Job) -> bool:
        """Whether ``parent`` lends now (blocked on its children)."""
        loan = self._loans.get(parent.seq)
        return loan is not None and loan.depth > 0


class LoanControl:
    """Mixed into :class:`~orcha.service.scheduler.Scheduler`, whose lock, queue,
    predicates and admission it uses: the loans as the scheduler applies them."""

    lock: SchedulerLock
    needs_recheck: bool
    _loans: Loans
    _running: dict[int, Job]
    _queue: PetitionQueue
    _rules: Rules

    def admit(self) -> None:
        raise NotImplementedError

    def _held(self, job: Job) -> bool:
        raise NotImplementedError

    def _take(self, job: Job, machine: Machine, loan: Loan | None = None) -> None:
        raise NotImplementedError

    def _unqueue(self, job: Job) -> None:
        raise NotImplementedError

    _start: Callable[[Job], None]

    def lend(self, parent: Job) -> None:
        """``parent`` (running) blocks on its children: it lends them its reservation
        until :meth:`end_loan` (calls nest: one per blocked thread of it)."""
        with self.lock:
            if parent.seq in self._running and self._loans.lend(parent):
                self.admit()

    def end_loan(self, parent: Job) -> None:
        """``parent`` resumes: its loan ends (a child running in it finishes in it)."""
        with self.lock:
            self._loans.end(parent)

    def lending(self, parent: Job) -> bool:
        """Whether ``parent`` lends its reservation now."""
        with self.lock:
            return self._loans.lending(parent)

    def _release(self, job: Job) -> None:
        """Free what the ended ``job`` held on its machine, unless it ran in a loan; a
        child still running in its own loan keeps what it borrowed, as its own."""
        machine, borrower = job.machine, self._loans.closed(job)
        if machine is not None and not self._loans.returned(job):
            machine.release(job.schedule, job.gpu_ids)
            if borrower is not None:
                machine.hold(borrower.schedule, borrower.gpu_ids)

    def _walk_loans(self) -> None:
        """Start, in each open loan, the first waiting child that fits in it (called
        by the admission walk, under the lock)."""
        started: list[Job] = []
        for loan, children in self._loans.offers():
            machine = loan.parent.placed
            for child in children:
                if child not in self._queue or self._held(child):
                    continue  # waiting for dependencies, or held
                if preds.loan(child, loan.parent) is not None:
                    continue  # asks for more than its parent holds
                if all(cond(child, machine) is None for cond in self._rules.conditions):
                    self._take(child, machine, loan)
                    started.append(child)
                    break
                self.needs_recheck = True  # conditions change without telling orcha
        for job in started:
            self._unqueue(job)
            self._start(job)
