"""`python -m tools.simulator.demo`: bring the demo network alive. `make run DEMO_CHARGERS=N` (or `make
demo`) runs it next to the server:

    python -m tools.simulator.demo --url ws://127.0.0.1:8000/ocpp --count 10

Simulates the first N accepted, operative charge points of the demo data (fixtures/demo.json, which
`make run` loads) as they are registered there: same identity, OCPP version, EVSEs, vendor and model,
connecting with security profile 1 and the documented demo key (`demo-key-` + the identity in lower
case, see fixtures/make_demo.py). Their cars arrive after a short while and charge with the demo cards
valid at each charger's operator (Accepted, unexpired RFID cards), spread so that a card is rarely at
two chargers at once. Runs until Ctrl-C or SIGTERM; waits for the server to listen first.

Reads the fixture file only: like the rest of tools/, it imports nothing of the product.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import socket
import sys
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from itertools import count as counter
from pathlib import Path
from typing import Any, TextIO
from urllib.parse import urlsplit

import ocpp.messages

from tools.simulator.base import ChargerOptions, SimulatedCharger
from tools.simulator.cli import configure_logging, run
from tools.simulator.fleet import PROTOCOLS, Fleet

DEMO_FIXTURE = Path(__file__).resolve().parent.parent.parent / "fixtures" / "demo.json"
RFID_TYPES = frozenset({"ISO14443", "ISO15693"})
# A demo should show charging in its first minute: cars arrive soon, then charge for a few minutes.
IDLE_S = (5.0, 40.0)
SESSION_S = (90.0, 420.0)


class DemoError(Exception):
    """The demo data cannot be simulated (exit status 1)."""


@dataclass(frozen=True)
class DemoChargePoint:
    identity: str
    organisation: int
    protocol: str
    evses: int
    vendor: str
    model: str
    firmware_version: str
    max_power_w: int


@dataclass(frozen=True)
class DemoCard:
    uid: str
    valid_at: frozenset[int]  # organisation pks; empty: every operator's chargers

    def valid_for(self, organisation: int) -> bool:
        return not self.valid_at or organisation in self.valid_at


def demo_key(identity: str) -> str:
    """The documented demo Basic-auth key of a demo charge point (fixtures/make_demo.py)."""
    return f"demo-key-{identity.lower()}"


def load_fixture(path: Path) -> list[dict[str, Any]]:
    try:
        records = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise DemoError(f"cannot read the demo data {path}: {exc}") from exc
    if not isinstance(records, list):
        raise DemoError(f"{path} is not a fixture (a JSON list of records)")
    return records


def demo_charge_points(records: list[dict[str, Any]]) -> list[DemoChargePoint]:
    """The demo's charge points a simulator can play, in fixture order: registration Accepted, Operative,
    speaking a protocol the simulator speaks."""
    evses: dict[int, int] = {}
    for record in records:
        if record["model"] == "stations.evse":
            evses[record["fields"]["charge_point"]] = evses.get(record["fields"]["charge_point"], 0) + 1
    result = []
    for record in records:
        if record["model"] != "stations.chargepoint":
            continue
        fields = record["fields"]
        if (
            fields.get("registration_status") != "Accepted"
            or fields.get("availability", "Operative") != "Operative"
            or fields.get("ocpp_protocol") not in PROTOCOLS
            or not evses.get(record["pk"])
        ):
            continue
        result.append(
            DemoChargePoint(
                identity=fields["identity"],
                organisation=fields["organisation"],
                protocol=fields["ocpp_protocol"],
                evses=evses[record["pk"]],
                vendor=fields.get("vendor") or "CPO-Sim",
                model=fields.get("model") or "SIM-AC22",
                firmware_version=fields.get("firmware_version") or "1.0.0",
                max_power_w=int(fields.get("max_power_w") or 22000),
            )
        )
    return result


def demo_cards(records: list[dict[str, Any]], *, now: datetime) -> list[DemoCard]:
    """The demo's RFID cards a charger accepts at `now`: status Accepted and not expired."""
    cards = []
    for record in records:
        if record["model"] != "accounts.idtoken":
            continue
        fields = record["fields"]
        if fields.get("status") != "Accepted" or fields.get("type") not in RFID_TYPES:
            continue
        expires = fields.get("expires_at")
        if expires and datetime.fromisoformat(expires.replace("Z", "+00:00")) <= now:
            continue
        cards.append(DemoCard(uid=fields["uid"], valid_at=frozenset(fields.get("valid_at") or ())))
    return cards


def build_chargers(
    url: str, charge_points: list[DemoChargePoint], cards: list[DemoCard]
) -> list[SimulatedCharger]:
    """One simulated charger per charge point, charging with cards valid at its operator; the cards go
    round the connectors of all chargers in turn, so each card is used by as few connectors as can be."""
    turn = counter()
    chargers = []
    for cp in charge_points:
        usable = [card.uid for card in cards if card.valid_for(cp.organisation)]
        if not usable:
            raise DemoError(f"no demo card is valid at {cp.identity} (organisation {cp.organisation})")
        tags = tuple(usable[next(turn) % len(usable)] for _ in range(cp.evses))
        options = ChargerOptions(
            identity=cp.identity,
            url=url,
            key=demo_key(cp.identity),
            connectors=cp.evses,
            vendor=cp.vendor,
            model=cp.model,
            firmware_version=cp.firmware_version,
            max_power_w=float(cp.max_power_w) / cp.evses,
            id_tags=tags,
            sessions=True,
            session_s=SESSION_S,
            idle_s=IDLE_S,
            seed=cp.identity,
        )
        chargers.append(PROTOCOLS[cp.protocol](options))
    return chargers


class DemoFleet(Fleet):
    """A fleet of already built chargers (each with its own identity, key, version and cards)."""

    def __init__(self, chargers: list[SimulatedCharger], *, connect_rate: float = 20.0) -> None:
        if not chargers:
            raise ValueError("a fleet has at least one charger")
        self.connect_rate = connect_rate
        self.chargers = chargers
        self._tasks = []


def wait_for_server(url: str, *, timeout_s: float) -> bool:
    """True once something accepts TCP connections at the URL's host and port; False after timeout_s."""
    parts = urlsplit(url)
    port = parts.port or (443 if parts.scheme == "wss" else 80)
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            with socket.create_connection((parts.hostname or "127.0.0.1", port), timeout=2):
                return True
        except OSError:
            if time.monotonic() >= deadline:
                return False
            time.sleep(0.5)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m tools.simulator.demo",
        description="Simulate the demo data's charge points, with charging sessions by the demo cards.",
    )
    parser.add_argument(
        "--url", required=True, help="OCPP endpoint without the identity, ws://host:port/ocpp"
    )
    parser.add_argument("--count", type=int, default=10, help="How many demo charge points (default 10).")
    parser.add_argument(
        "--fixture", type=Path, default=DEMO_FIXTURE, help="The demo data (fixtures/demo.json)."
    )
    parser.add_argument(
        "--wait", type=float, default=120.0, help="Seconds to wait for the server to listen (default 120)."
    )
    parser.add_argument("-v", "--verbosity", type=int, choices=(0, 1, 2, 3), default=1)
    return parser


def main(argv: list[str] | None = None, *, stdout: TextIO | None = None, stderr: TextIO | None = None) -> int:
    """Run the command line `argv`; 0 after Ctrl-C/SIGTERM, 1 when the demo cannot run, 2 bad arguments."""
    stdout = stdout or sys.stdout
    stderr = stderr or sys.stderr
    options = build_parser().parse_args(argv)
    if urlsplit(options.url).scheme not in ("ws", "wss"):
        stderr.write("error: --url must be a ws:// or wss:// URL, e.g. ws://127.0.0.1:8000/ocpp\n")
        return 2
    if options.count < 1:
        stderr.write("error: --count must be at least 1\n")
        return 2
    try:
        records = load_fixture(options.fixture)
        charge_points = demo_charge_points(records)
        if not charge_points:
            raise DemoError(f"{options.fixture} holds no accepted, operative charge point to simulate")
        if options.count > len(charge_points):
            stderr.write(
                f"demo: the demo data has {len(charge_points)} charge points to simulate; "
                f"simulating those, not {options.count}\n"
            )
        chargers = build_chargers(
            options.url, charge_points[: options.count], demo_cards(records, now=datetime.now(UTC))
        )
    except DemoError as exc:
        stderr.write(f"error: {exc}\n")
        return 1
    if not wait_for_server(options.url, timeout_s=options.wait):
        stderr.write(f"error: nothing listens at {options.url} after {options.wait:g} s\n")
        return 1
    configure_logging(options.verbosity)
    ocpp.messages.ASYNC_VALIDATION = False  # many chargers in one loop (see cli.main)
    identities = ", ".join(charger.identity for charger in chargers)
    stderr.write(f"demo: {len(chargers)} simulated chargers connect to {options.url}: {identities}\n")
    stderr.flush()
    summary = asyncio.run(run(DemoFleet(chargers), None))
    stdout.write(summary + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
