"""`manage.py site_set <location-id> --max-current-a 64 [--phases 3]`: set the power budget of a location's
site (made when the location has none) and print what changed."""

from __future__ import annotations

from decimal import Decimal, InvalidOperation
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from apps.smartcharging import services
from apps.stations.models import Location
from cpo.exceptions import ApplicationError


class Command(BaseCommand):
    help = "Set a location's site budget in amperes per phase (and its phase count); prints what changed."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("location_id", help="The location's id.")
        parser.add_argument("--max-current-a", required=True, help="Budget in amperes per phase, e.g. 64.")
        parser.add_argument("--phases", type=int, choices=[1, 2, 3], default=None, help="1, 2 or 3 phases.")

    def handle(
        self, *args: Any, location_id: str, max_current_a: str, phases: int | None, **options: Any
    ) -> None:
        try:
            location = Location.objects.get(pk=int(location_id))
        except (ValueError, Location.DoesNotExist):
            raise CommandError(f"No location with id {location_id!r}.") from None
        try:
            budget = Decimal(max_current_a)
        except InvalidOperation:
            raise CommandError(
                f"--max-current-a must be a number of amperes, got {max_current_a!r}."
            ) from None
        if not budget.is_finite():
            raise CommandError(f"--max-current-a must be a number of amperes, got {max_current_a!r}.")
        try:
            result = services.site_set(
                location=location, max_current_a=budget, phases=phases, source="manage.py"
            )
        except ApplicationError as exc:
            raise CommandError(exc.detail) from None
        site = result.site
        if not result.changes:
            self.stdout.write(
                f"Site {site.pk} ({site}): unchanged, {site.max_current_a} A x {site.phases} phases."
            )
            return
        verb = "created" if result.created else "changed"
        self.stdout.write(f"Site {site.pk} ({site}) {verb}:")
        for field, (old, new) in result.changes.items():
            self.stdout.write(f"  {field}: {'-' if old is None else old} -> {new}")
        self.stdout.write(f"  budget: {site.max_power_kw} kW at {site.voltage_v} V")
