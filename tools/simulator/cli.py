"""`python -m tools.simulator`: run a fleet of simulated OCPP 1.6J or 2.0.1 chargers against a server.

    python -m tools.simulator --url ws://127.0.0.1:8000/ocpp --count 10 --protocol ocpp2.0.1 \
        --register --key 0123456789abcdef0123 --sessions --duration 120

Runs until Ctrl-C (or SIGTERM) or --duration, then prints one summary line. `--register` first creates
the charge points (and the driver tags their sessions use) in the product's database, through its
`chargepoint_add` and `idtoken_add` management commands (so it needs the product's Django settings, as
`manage.py` does), so a fresh `make run` can be exercised without setting anything up by hand.

Exit status: 0 after the run, 1 when --register failed, 2 for bad arguments.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import re
import signal
import sys
from typing import TextIO
from urllib.parse import urlsplit

import ocpp.messages

from tools.simulator import register
from tools.simulator.fleet import PROTOCOLS, Fleet

LATER_PROTOCOLS = ("ocpp2.1",)
ID_TAG_PREFIX = re.compile(r"^(?:[0-9A-F]{2}){0,6}$")


class UsageError(Exception):
    """An argument the simulator cannot run with (exit status 2)."""


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m tools.simulator",
        description=(
            "Simulate N OCPP chargers connecting to URL/<identity>: boot, statuses, heartbeats, optional "
            "charging sessions, and answers to every command. Prints a one-line summary at the end."
        ),
    )
    parser.add_argument(
        "--url", required=True, help="OCPP endpoint without the identity, e.g. ws://host:8000/ocpp"
    )
    parser.add_argument("--count", type=int, default=1, help="Number of chargers (default 1).")
    parser.add_argument(
        "--protocol", default="ocpp1.6", help=f"OCPP subprotocol: {' or '.join(PROTOCOLS)} (default ocpp1.6)."
    )
    parser.add_argument("--prefix", default="SIM-", help="Identity prefix (default SIM-): SIM-00001, ...")
    auth = parser.add_mutually_exclusive_group()
    auth.add_argument("--key", help="Basic-auth key of every charger (security profile 1), 16-40 characters.")
    auth.add_argument("--no-auth", action="store_true", help="Connect without credentials (profile 0).")
    parser.add_argument("--connectors", type=int, default=2, help="Connectors per charger (default 2).")
    parser.add_argument("--sessions", action="store_true", help="Run automatic charging sessions.")
    parser.add_argument(
        "--session-seconds",
        type=float,
        default=120.0,
        help="Mean length of an automatic session (default 120).",
    )
    parser.add_argument(
        "--idle-seconds",
        type=float,
        default=60.0,
        help="Mean idle time between automatic sessions (default 60).",
    )
    parser.add_argument(
        "--id-tag-prefix",
        default="04A1",
        help="Hex prefix of the driver tags (one per connector: prefix + charger no. + connector no.).",
    )
    parser.add_argument(
        "--meter-interval",
        type=int,
        default=60,
        help="MeterValueSampleInterval in seconds until the server changes it (default 60).",
    )
    parser.add_argument(
        "--connect-rate",
        type=float,
        default=100.0,
        help="New connections per second while the fleet ramps up (default 100).",
    )
    parser.add_argument(
        "--duration", type=float, help="Stop after this many seconds (default: until Ctrl-C)."
    )
    parser.add_argument(
        "--register",
        action="store_true",
        help="Create the charge points (with --key) and the id tags in the product's database first.",
    )
    parser.add_argument(
        "--organisation", metavar="SLUG", help="Operator organisation for --register (default: the only one)."
    )
    parser.add_argument(
        "-v",
        "--verbosity",
        type=int,
        choices=(0, 1, 2, 3),
        default=1,
        help="2 or more: log every OCPP frame and connection event (default 1: warnings only).",
    )
    return parser


def check(options: argparse.Namespace) -> None:
    """UsageError for arguments the simulator cannot run with."""
    protocol = options.protocol
    if protocol in LATER_PROTOCOLS:
        raise UsageError(f"--protocol {protocol} is not simulated yet; use {' or '.join(PROTOCOLS)}.")
    if protocol not in PROTOCOLS:
        raise UsageError(f"Unknown --protocol {protocol!r}; use {' or '.join(PROTOCOLS)}.")
    if urlsplit(options.url).scheme not in ("ws", "wss"):
        raise UsageError("--url must be a ws:// or wss:// URL, e.g. ws://127.0.0.1:8000/ocpp")
    if not 1 <= options.count <= 100_000:
        raise UsageError("--count must be between 1 and 100000.")
    if not 1 <= options.connectors <= 64:
        raise UsageError("--connectors must be between 1 and 64.")
    if not ID_TAG_PREFIX.match(options.id_tag_prefix):
        raise UsageError("--id-tag-prefix must be 0 to 12 upper-case hex digits, an even number of them.")


def main(argv: list[str] | None = None, *, stdout: TextIO | None = None, stderr: TextIO | None = None) -> int:
    """Run the command line `argv` (default: the process's); returns the exit status."""
    stdout = stdout or sys.stdout
    stderr = stderr or sys.stderr
    options = build_parser().parse_args(argv)
    try:
        check(options)
    except UsageError as exc:
        stderr.write(f"error: {exc}\n")
        return 2
    key = None if options.no_auth else options.key
    if options.register:
        try:
            registered = register.register_fleet(
                prefix=options.prefix,
                count=options.count,
                connectors=options.connectors,
                key=key,
                id_tag_prefix=options.id_tag_prefix,
                organisation=options.organisation,
            )
        except register.RegisterError as exc:
            stderr.write(f"error: {exc}\n")
            return 1
        stderr.write(registered.summary() + "\n")
    configure_logging(options.verbosity)
    # Many chargers in one process: validate in the event loop rather than in a thread pool per
    # message (FIELD-NOTES: much higher throughput; every message is still validated).
    async_validation, ocpp.messages.ASYNC_VALIDATION = ocpp.messages.ASYNC_VALIDATION, False
    session_s, idle_s = options.session_seconds, options.idle_seconds
    fleet = Fleet(
        url=options.url,
        count=options.count,
        protocol=options.protocol,
        prefix=options.prefix,
        connect_rate=options.connect_rate,
        key=key,
        connectors=options.connectors,
        sessions=options.sessions,
        session_s=(session_s / 2, session_s * 1.5),
        idle_s=(idle_s / 2, idle_s * 1.5),
        id_tag_prefix=options.id_tag_prefix,
        meter_interval_s=options.meter_interval,
    )
    try:
        summary = asyncio.run(run(fleet, options.duration))
    finally:
        ocpp.messages.ASYNC_VALIDATION = async_validation
    stdout.write(summary + "\n")
    return 0


def configure_logging(verbosity: int) -> None:
    """Warnings only below verbosity 2 (the `ocpp` library logs every frame at INFO); a handler on the
    root logger when nothing configured one (run from the command line rather than inside Django)."""
    if not logging.getLogger().handlers:
        logging.basicConfig(format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    level = logging.WARNING if verbosity < 2 else logging.INFO if verbosity == 2 else logging.DEBUG
    for name in ("ocpp", "websockets", "tools.simulator"):
        logging.getLogger(name).setLevel(level)


async def run(fleet: Fleet, duration_s: float | None) -> str:
    """Run until the duration passes or SIGINT/SIGTERM; the summary is taken before disconnecting."""
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        with contextlib.suppress(NotImplementedError, RuntimeError):
            loop.add_signal_handler(signum, stop.set)
    fleet.start()
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(stop.wait(), timeout=duration_s)
    summary = fleet.summary()
    await fleet.stop()
    return summary
