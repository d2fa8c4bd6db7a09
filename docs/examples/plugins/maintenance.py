"""maintenance: a plugin with no command and no kind, only service-side parts.

* a predicate: while the flag file exists, no petition starts, unless it was sent with
  ``--env MAINTENANCE=ok``;
* settings (``config_schema``) from the configuration file: the flag file, a journal;
* lifecycle hooks: ``load`` takes the settings, ``start`` counts the service's starts
  in the plugin's persistent state, ``stop`` says so in the service's log;
* an event sink: one journal line per finished petition, and a count in the state;
* ``health()``: unhealthy while the journal cannot be written.
"""

from __future__ import annotations

import os
from typing import Any

from orcha.plugins import BasePlugin


class MaintenancePlugin(BasePlugin):
    name = "maintenance"
    help = "Hold petitions while a flag file exists; journal the finished ones"
    config_schema = {
        "type": "object",
        "properties": {
            "flag_file": {
                "type": "string",
                "minLength": 1,
                "default": "/etc/orcha/maintenance",
                "description": "While this file exists, petitions wait.",
            },
            "journal": {
                "type": "string",
                "default": "",
                "description": "A file to append a line to per finished petition.",
            },
        },
        "additionalProperties": False,
    }

    def __init__(self) -> None:
        # Every orcha command, clients included, finds and builds the plugins: keep
        # this cheap, and leave the real work to the service-side hooks below.
        self.flag_file = "/etc/orcha/maintenance"
        self.journal = ""
        self.service: Any = None  # set by start()

    @staticmethod
    def version() -> str:
        return "maintenance - 1.0.0"

    # -- what the scheduler asks -------------------------------------------------------
    def predicates(self) -> list[Any]:
        return [self.not_in_maintenance]

    def not_in_maintenance(self, petition: Any) -> bool:
        """May ``petition`` start? Runs under the scheduler's lock: be quick."""
        if petition.env.get("MAINTENANCE") == "ok":
            return True
        return not os.path.exists(self.flag_file)

    # -- what the service tells ---------------------------------------------------------
    def event_sinks(self) -> list[Any]:
        return [self.record]

    def record(self, event: dict[str, Any]) -> None:
        """Every event (a delivery thread of its own calls it); only ends count here."""
        if event["event"] != "finished" or self.service is None:
            return
        state = self.service.state
        state.set("finished", state.get("finished", 0) + 1)
        if self.journal:
            end = event["data"]
            line = f"{event['petition']} {event['kind']} {end['state']} {end['code']}\n"
            try:
                with open(self.journal, "a", encoding="utf-8") as f:
                    f.write(line)
            except OSError as e:
                self.service.log.warning("cannot write the journal: %s", e)

    # -- the service's life -------------------------------------------------------------
    def load(self, config: dict[str, Any]) -> None:
        # Relative paths are taken from the folder 'orcha serve' was started in.
        self.flag_file = os.path.abspath(config["flag_file"])
        self.journal = config["journal"] and os.path.abspath(config["journal"])

    def start(self, service: Any) -> None:
        self.service = service
        state = service.state  # this plugin's keys, kept in the service's database
        state.set("starts", state.get("starts", 0) + 1)
        service.log.info("petitions wait while %s exists", self.flag_file)

    def stop(self) -> None:
        if self.service is not None:
            self.service.log.info("stopped")

    def health(self) -> tuple[bool, dict[str, Any]]:
        details: dict[str, Any] = {"holding": os.path.exists(self.flag_file)}
        if self.journal:
            try:
                with open(self.journal, "a", encoding="utf-8"):
                    pass
            except OSError as e:
                details["error"] = f"cannot write the journal: {e.strerror}"
                return False, details
        return True, details


plugin = MaintenancePlugin
