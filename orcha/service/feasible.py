"""Whether a petition's requests could ever be met by the service's machines, whatever
ended: checked when it is submitted or changed, so a request nothing could meet is
refused at once rather than queued for ever."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from orcha.protocol.schedule import Schedule
    from orcha.service.machines import Machine


def check_feasible(machines: Sequence[Machine], schedule: Schedule) -> None:
    """Refuse (PetitionError, REFUSED) a request no machine could ever meet, whatever
    ended: a petition runs on one machine, so each request is held against the largest."""
    from orcha.errors import ExitCode, PetitionError
    from orcha.service.predicates import gib

    if schedule.on is not None:  # held against the machine it names only
        named = [m for m in machines if schedule.on in m.aliases]
        if not named:
            known = ", ".join(sorted({a for m in machines for a in m.aliases}))
            raise PetitionError(
                f"--on {schedule.on}: no machine of this service is called so (it has: {known})",
                ExitCode.REFUSED,
            )
        machines = named
    one = len(machines) == 1
    largest = max(machines, key=lambda m: m.slots)
    slots = largest.slots
    if schedule.cpus > slots:
        where = "this service has" if one else "the largest machine of this service has"
        raise PetitionError(
            f"the petition asks for {schedule.cpus} CPUs but {where} {slots} "
            f"({largest.capacity_hint}); ask for fewer with --cpus",
            ExitCode.REFUSED,
        )
    most_gpus = max(len(m.inventory) for m in machines)
    if schedule.gpus > most_gpus:
        inventory = [g for m in machines for g in m.inventory]
        have = ", ".join(inventory) if inventory else "none"
        raise PetitionError(
            f"the petition asks for {schedule.gpus} GPU(s) but this service has "
            f"{most_gpus} ({have}; 'orcha serve --gpus'); ask for fewer with --gpus",
            ExitCode.REFUSED,
        )
    totals = {m.name: m.total_memory() for m in machines} if schedule.mem else {}
    if totals and schedule.mem > max(totals.values()):
        raise PetitionError(
            f"the petition asks for {gib(schedule.mem)} of memory but this host has "
            f"{gib(max(totals.values()))}; ask for less with --mem",
            ExitCode.REFUSED,
        )
    if not one and not any(
        schedule.cpus <= m.slots
        and schedule.gpus <= len(m.inventory)
        and (not schedule.mem or schedule.mem <= totals[m.name])
        for m in machines
    ):
        raise PetitionError(
            f"no machine of this service has {schedule.cpus} CPUs, {schedule.gpus} "
            f"GPU(s) and {gib(schedule.mem)} of memory together; ask for less",
            ExitCode.REFUSED,
        )
