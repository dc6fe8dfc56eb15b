"""How long each demo step may take, derived from the work the world gives it.

The budgets are there to turn a hang into a clear error that names the step and its log, not to
measure the machine: every allowance is many times what the step costs on an idle 2-core machine
(a `libra` command starts in about 2 s there, a node crawls and hashes about 20 pages or images
per second), so a shared CI machine at load average 20, where each process gets a tenth of a
core, still finishes inside them. A bigger world gets proportionally bigger budgets.
"""

from __future__ import annotations

from dataclasses import dataclass

from libra.demo.world import World

# One `libra ...` process: interpreter start-up and imports plus a small piece of work.
COMMAND_S = 60.0
# A service (function, coordinator) from start until its health endpoint answers.
SERVICE_S = 120.0
# Crawling one page or hashing one image, counted as if every node crawled the whole world.
CRAWL_UNIT_S = 0.5
# One HTTP request to the coordinator (the picture).
REQUEST_S = 60.0


@dataclass(frozen=True)
class DemoBudget:
    """Wall-clock allowance in seconds of each kind of demo step."""

    service_s: float
    command_s: float
    crawl_s: float
    request_s: float
    commands: int  # one-shot commands the demo runs (for the total)
    periods: int = 1  # report periods: one crawl step and one picture each

    @classmethod
    def for_world(cls, world: World, periods: int = 1) -> DemoBudget:
        stats = world.stats()
        nodes = len(world.nodes)
        crawl_units = nodes * (stats["pages"] + stats["images"])
        # The viewer token; per node `init`, registration and its list import; per node and
        # period a notices run and a report.
        commands = 1 + 3 * nodes + 2 * nodes * periods
        return cls(
            service_s=SERVICE_S,
            command_s=COMMAND_S,
            crawl_s=COMMAND_S + CRAWL_UNIT_S * crawl_units,
            request_s=REQUEST_S,
            commands=commands,
            periods=periods,
        )

    @property
    def total_s(self) -> float:
        """The whole run at the worst: two services, every command, every period's crawl and
        picture, the removals and the two flows."""
        return (
            2 * self.service_s
            + self.commands * self.command_s
            + self.periods * (self.crawl_s + self.request_s)
            + 3 * self.request_s
        )
