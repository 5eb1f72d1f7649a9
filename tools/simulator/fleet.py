"""Many simulated chargers in one process and one event loop, connecting in a staggered ramp.

Each charger costs a WebSocket (no compression), the library's receive loop and a few small tasks, so
one process can hold thousands; `connect_rate` keeps a large fleet from arriving as one burst.
"""

from __future__ import annotations

import asyncio
import contextlib
from typing import Any

from tools.simulator.base import ChargerOptions, SimulatedCharger
from tools.simulator.state import Stats
from tools.simulator.v16 import Charger
from tools.simulator.v201 import ChargingStation

# subprotocol → the class that simulates a charger speaking it
PROTOCOLS: dict[str, type[SimulatedCharger]] = {"ocpp1.6": Charger, "ocpp2.0.1": ChargingStation}


def fleet_identities(prefix: str, count: int) -> list[str]:
    """The identities a fleet uses: prefix + a zero-padded number from 1 (SIM-00001, SIM-00002, ...)."""
    width = max(5, len(str(count)))
    return [f"{prefix}{n:0{width}d}" for n in range(1, count + 1)]


def fleet_id_tags(prefix: str, number: int, connectors: int) -> tuple[str, ...]:
    """The driver tags of the `number`-th charger (from 1), one per connector: the hex `prefix`, the
    charger number in 6 hex digits and the connector in 2, e.g. 04A1 00002A 01 (an ISO 14443 uid when
    the prefix is an even number of hex digits)."""
    return tuple(f"{prefix}{number:06X}{connector:02X}" for connector in range(1, connectors + 1))


class Fleet:
    """`count` chargers named by `fleet_identities(prefix, count)`, all built with the same options and
    speaking `protocol` (ocpp1.6 or ocpp2.0.1); with `id_tag_prefix`, each charger's automatic sessions
    use its own `fleet_id_tags`."""

    def __init__(
        self,
        *,
        url: str,
        count: int,
        prefix: str = "SIM-",
        connect_rate: float = 100.0,
        id_tag_prefix: str | None = None,
        protocol: str = "ocpp1.6",
        **charger_options: Any,
    ) -> None:
        if protocol not in PROTOCOLS:
            raise ValueError(f"no simulator speaks {protocol}; choose one of {', '.join(PROTOCOLS)}")
        if count < 1:
            raise ValueError("a fleet has at least one charger")
        if connect_rate <= 0:
            raise ValueError("connect_rate must be positive")
        self.connect_rate = connect_rate
        connectors = charger_options.get("connectors", ChargerOptions.connectors)
        self.chargers = []
        for number, identity in enumerate(fleet_identities(prefix, count), start=1):
            options = dict(charger_options)
            if id_tag_prefix is not None:
                options["id_tags"] = fleet_id_tags(id_tag_prefix, number, connectors)
            self.chargers.append(PROTOCOLS[protocol](ChargerOptions(identity=identity, url=url, **options)))
        self._tasks: list[asyncio.Task] = []

    def __getitem__(self, identity: str) -> SimulatedCharger:
        for charger in self.chargers:
            if charger.identity == identity:
                return charger
        raise KeyError(identity)

    def start(self) -> None:
        """Start every charger; the n-th connects n / connect_rate seconds from now."""
        loop = asyncio.get_running_loop()
        self._tasks = [
            loop.create_task(
                charger.run(initial_delay_s=n / self.connect_rate), name=f"sim-{charger.identity}"
            )
            for n, charger in enumerate(self.chargers)
        ]

    async def stop(self) -> None:
        """Close every connection and wait until all chargers have ended."""
        for charger in self.chargers:
            charger.stop()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        self._tasks = []

    async def run(self, *, duration_s: float | None = None, stop: asyncio.Event | None = None) -> None:
        """Start, run until `duration_s` passes or `stop` is set (forever when neither is given), stop."""
        self.start()
        waiter = stop or asyncio.Event()
        try:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(waiter.wait(), timeout=duration_s)
        finally:
            await self.stop()

    @property
    def connected(self) -> int:
        """Chargers connected with an accepted BootNotification right now."""
        return sum(1 for charger in self.chargers if charger.accepted)

    def stats(self) -> Stats:
        total = Stats()
        for charger in self.chargers:
            total.add(charger.stats)
        return total

    def summary(self) -> str:
        """One line: connected now, boots accepted, sessions started/completed, commands answered, reboots,
        errors."""
        s = self.stats()
        return (
            f"chargers={len(self.chargers)} connected={self.connected} boots_accepted={s.boots_accepted} "
            f"sessions={s.sessions_started} completed={s.sessions_completed} "
            f"commands={s.commands_answered} reboots={s.reboots} errors={s.errors}"
        )
