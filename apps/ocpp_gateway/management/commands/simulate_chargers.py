"""`manage.py simulate_chargers`: run a fleet of simulated OCPP 1.6J or 2.0.1 chargers against a server.

    python manage.py simulate_chargers --url ws://127.0.0.1:8000/ocpp --count 10 --protocol ocpp2.0.1 \
        --register --key 0123456789abcdef0123 --sessions --duration 120

Runs until Ctrl-C (or SIGTERM) or --duration, then prints one summary line. `--register` first creates
the charge points (and the driver tags their sessions use) in the database, so a fresh `make run` can be
exercised without setting anything up by hand.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import re
import signal
from typing import Any
from urllib.parse import urlsplit

import ocpp.messages
from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.db import transaction

from apps.accounts.choices import IdTokenType
from apps.accounts.models import Organisation
from apps.accounts.services import idtoken_upsert
from apps.ocpp_gateway.simulator import PROTOCOLS, Fleet, fleet_id_tags, fleet_identities
from apps.stations.services import chargepoint_add_connectors, chargepoint_ensure
from cpo.exceptions import ApplicationError

LATER_PROTOCOLS = ("ocpp2.1",)
ID_TAG_PREFIX = re.compile(r"^(?:[0-9A-F]{2}){0,6}$")


class Command(BaseCommand):
    help = (
        "Simulate N OCPP chargers connecting to URL/<identity>: boot, statuses, heartbeats, optional "
        "charging sessions, and answers to every command. Prints a one-line summary at the end."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument(
            "--url", required=True, help="OCPP endpoint without the identity, e.g. ws://host:8000/ocpp"
        )
        parser.add_argument("--count", type=int, default=1, help="Number of chargers (default 1).")
        parser.add_argument(
            "--protocol",
            default="ocpp1.6",
            help=f"OCPP subprotocol: {' or '.join(PROTOCOLS)} (default ocpp1.6).",
        )
        parser.add_argument("--prefix", default="SIM-", help="Identity prefix (default SIM-): SIM-00001, ...")
        auth = parser.add_mutually_exclusive_group()
        auth.add_argument(
            "--key", help="Basic-auth key of every charger (security profile 1), 16-40 characters."
        )
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
            help="Create the charge points (with --key) and the id tag in the database first.",
        )
        parser.add_argument(
            "--organisation",
            metavar="SLUG",
            help="Operator organisation for --register (default: the only one).",
        )

    def handle(self, *args: Any, **options: Any) -> None:
        protocol = options["protocol"]
        if protocol in LATER_PROTOCOLS:
            raise CommandError(f"--protocol {protocol} is not simulated yet; use {' or '.join(PROTOCOLS)}.")
        if protocol not in PROTOCOLS:
            raise CommandError(f"Unknown --protocol {protocol!r}; use {' or '.join(PROTOCOLS)}.")
        url = options["url"]
        if urlsplit(url).scheme not in ("ws", "wss"):
            raise CommandError("--url must be a ws:// or wss:// URL, e.g. ws://127.0.0.1:8000/ocpp")
        count = options["count"]
        if not 1 <= count <= 100_000:
            raise CommandError("--count must be between 1 and 100000.")
        if not 1 <= options["connectors"] <= 64:
            raise CommandError("--connectors must be between 1 and 64.")
        if not ID_TAG_PREFIX.match(options["id_tag_prefix"]):
            raise CommandError(
                "--id-tag-prefix must be 0 to 12 upper-case hex digits, an even number of them."
            )
        key = None if options["no_auth"] else options["key"]
        if options["register"]:
            self._register(options, key)
        if options["verbosity"] < 2:
            logging.getLogger("ocpp").setLevel(logging.WARNING)
            logging.getLogger("websockets").setLevel(logging.WARNING)
            logging.getLogger("apps.ocpp_gateway.simulator").setLevel(logging.WARNING)
        # Many chargers in one process: validate in the event loop rather than in a thread pool per
        # message (FIELD-NOTES: much higher throughput; every message is still validated).
        async_validation, ocpp.messages.ASYNC_VALIDATION = ocpp.messages.ASYNC_VALIDATION, False
        session_s, idle_s = options["session_seconds"], options["idle_seconds"]
        fleet = Fleet(
            url=url,
            count=count,
            protocol=protocol,
            prefix=options["prefix"],
            connect_rate=options["connect_rate"],
            key=key,
            connectors=options["connectors"],
            sessions=options["sessions"],
            session_s=(session_s / 2, session_s * 1.5),
            idle_s=(idle_s / 2, idle_s * 1.5),
            id_tag_prefix=options["id_tag_prefix"],
            meter_interval_s=options["meter_interval"],
        )
        try:
            summary = asyncio.run(self._run(fleet, options["duration"]))
        finally:
            ocpp.messages.ASYNC_VALIDATION = async_validation
        self.stdout.write(summary)

    async def _run(self, fleet: Fleet, duration_s: float | None) -> str:
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

    def _register(self, options: dict[str, Any], key: str | None) -> None:
        """Create (or bring up to date) the fleet's charge points with their connectors, and the driver tags
        their automatic sessions use (accepted tokens)."""
        organisation = self._organisation(options["organisation"])
        identities = fleet_identities(options["prefix"], options["count"])
        created = 0
        try:
            with transaction.atomic():
                for identity in identities:
                    charge_point, changes = chargepoint_ensure(
                        identity=identity, organisation=organisation, password=key, source="command"
                    )
                    chargepoint_add_connectors(charge_point=charge_point, count=options["connectors"])
                    created += changes == ["created"]
                for number in range(1, options["count"] + 1):
                    for id_tag in fleet_id_tags(options["id_tag_prefix"], number, options["connectors"]):
                        idtoken_upsert(
                            uid=id_tag,
                            type=IdTokenType.ISO14443,
                            status="Accepted",
                            organisation=organisation,
                            source="command",
                        )
        except ApplicationError as exc:
            raise CommandError(exc.detail) from exc
        self.stderr.write(
            f"registered {len(identities)} charge points ({created} new) in {organisation.slug}"
        )

    def _organisation(self, slug: str | None) -> Organisation:
        if slug:
            found = Organisation.objects.filter(slug=slug).first()
            if found is None:
                raise CommandError(f"No organisation with slug {slug!r}.")
            return found
        slugs = list(Organisation.objects.order_by("slug").values_list("slug", flat=True)[:11])
        if len(slugs) == 1:
            return Organisation.objects.get(slug=slugs[0])
        if not slugs:
            raise CommandError("No organisation exists yet; create one first (e.g. in the admin).")
        raise CommandError(
            f"Name the operator with --organisation SLUG (organisations: {', '.join(slugs[:10])})."
        )
