"""`manage.py chargepoint_add IDENTITY`: register a charge point from a script, idempotently."""

from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.db import transaction

from apps.accounts.models import Organisation
from apps.stations.models import ChargePoint
from apps.stations.services import chargepoint_add_connectors, chargepoint_ensure, location_get
from cpo.exceptions import ApplicationError


class Command(BaseCommand):
    help = (
        "Create a charge point, or bring an existing one to what is given (location, key, connectors). "
        "Prints 'created', 'updated: <what>' or 'unchanged'; exits non-zero with a message on bad input."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("identity", help="OCPP identity, as the charger uses it in /ocpp/<identity>.")
        parser.add_argument(
            "--location", metavar="ID", help="Location id (its operator owns the charge point)."
        )
        parser.add_argument(
            "--password",
            metavar="KEY",
            help="Basic-auth key, 16-40 printable characters (security profile 1).",
        )
        parser.add_argument(
            "--organisation",
            metavar="SLUG",
            help="Operator organisation; optional with --location or when only one organisation exists.",
        )
        parser.add_argument(
            "--connectors",
            metavar="N",
            type=int,
            help="Make sure EVSEs 1..N exist with one 22 kW Type 2 connector each (the OCPP 1.6 shape).",
        )

    def handle(
        self,
        *args: Any,
        identity: str,
        location: str | None,
        password: str | None,
        organisation: str | None,
        connectors: int | None,
        **options: Any,
    ) -> None:
        try:
            # One transaction: a bad --connectors never leaves a half-registered charge point behind.
            with transaction.atomic():
                location_obj = location_get(pk=location) if location is not None else None
                owner = self._organisation(
                    slug=organisation, identity=identity, has_location=location_obj is not None
                )
                charge_point, changes = chargepoint_ensure(
                    identity=identity,
                    organisation=owner,
                    location=location_obj,
                    password=password,
                    source="command",
                )
                if connectors is not None:
                    added = chargepoint_add_connectors(charge_point=charge_point, count=connectors)
                    if added and changes != ["created"]:
                        changes.append("connectors")
        except ApplicationError as exc:
            raise CommandError(exc.detail) from exc
        if changes == ["created"]:
            self.stdout.write("created")
        elif changes:
            self.stdout.write("updated: " + ", ".join(changes))
        else:
            self.stdout.write("unchanged")

    def _organisation(self, *, slug: str | None, identity: str, has_location: bool) -> Organisation | None:
        """The organisation named by `slug`; without one, the only organisation when a new charge point
        needs an owner and nothing else names it."""
        if slug is not None:
            found = Organisation.objects.filter(slug=slug).first()
            if found is None:
                raise CommandError(f"No organisation with slug {slug!r}.")
            return found
        if has_location or ChargePoint.objects.filter(identity__iexact=identity).exists():
            return None
        slugs = list(Organisation.objects.order_by("slug").values_list("slug", flat=True)[:11])
        if len(slugs) == 1:
            return Organisation.objects.get(slug=slugs[0])
        if not slugs:
            raise CommandError("No organisation exists yet; create one first (e.g. in the admin).")
        listed = ", ".join(slugs[:10]) + (", ..." if len(slugs) > 10 else "")
        raise CommandError(
            f"Name the operator with --organisation SLUG or --location ID (organisations: {listed})."
        )
