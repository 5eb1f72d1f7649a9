"""`--register`: put a fleet's charge points and driver tags into the product's database before it runs.

The simulator does not import the product: this goes through the product's own scripting interface,
the `chargepoint_add` and `idtoken_add` management commands (both idempotent), in one transaction so a
refused registration leaves nothing half-done. It needs the product's Django settings, as `manage.py`
does (DJANGO_SETTINGS_MODULE, default config.settings.local); inside a process that already set Django
up (a test) it uses that.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from io import StringIO

import django
from django.apps import apps
from django.core.management import CommandError, call_command
from django.db import transaction

from tools.simulator.fleet import fleet_id_tags, fleet_identities

DEFAULT_SETTINGS = "config.settings.local"


class RegisterError(Exception):
    """The product refused the registration (nothing was stored)."""


@dataclass(frozen=True)
class Registered:
    charge_points: int
    created: int
    organisation: str | None

    def summary(self) -> str:
        where = f" in {self.organisation}" if self.organisation else ""
        return f"registered {self.charge_points} charge points ({self.created} new){where}"


def setup_django() -> None:
    """Set Django up with the product's settings unless this process already did."""
    if not apps.ready:
        os.environ.setdefault("DJANGO_SETTINGS_MODULE", DEFAULT_SETTINGS)
        django.setup()


def register_fleet(
    *,
    prefix: str,
    count: int,
    connectors: int,
    key: str | None,
    id_tag_prefix: str,
    organisation: str | None,
) -> Registered:
    """Create (or bring up to date) the fleet's charge points with `connectors` EVSEs each and Basic-auth
    `key`, and one accepted RFID tag per connector (`fleet_id_tags`), owned by `organisation` (a slug;
    None: the product's only organisation for new charge points, and tags of no issuing operator)."""
    setup_django()
    owner = ["--organisation", organisation] if organisation else []
    identities = fleet_identities(prefix, count)
    created = 0
    try:
        with transaction.atomic():
            for identity in identities:
                out = StringIO()
                password = ["--password", key] if key else []
                call_command(
                    "chargepoint_add",
                    identity,
                    "--connectors",
                    str(connectors),
                    *password,
                    *owner,
                    stdout=out,
                )
                created += out.getvalue().strip() == "created"
            for number in range(1, count + 1):
                for id_tag in fleet_id_tags(id_tag_prefix, number, connectors):
                    call_command(
                        "idtoken_add",
                        id_tag,
                        "--type",
                        "ISO14443",
                        "--status",
                        "Accepted",
                        *owner,
                        stdout=StringIO(),
                    )
    except CommandError as exc:
        raise RegisterError(str(exc)) from exc
    return Registered(charge_points=len(identities), created=created, organisation=organisation)
