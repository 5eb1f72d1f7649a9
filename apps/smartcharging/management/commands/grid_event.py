"""`manage.py grid_event --location <id> --reduce-percent 20 --minutes 30`: declare a demand-response event
for the sites of a location, starting now (or after --starts-in minutes), and print it."""

from __future__ import annotations

from datetime import timedelta
from decimal import Decimal, InvalidOperation
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from apps.smartcharging import services
from apps.smartcharging.models import Site
from apps.stations.models import Location
from cpo import clock
from cpo.exceptions import ApplicationError


class Command(BaseCommand):
    help = "Cut the budgets of a location's sites by a percentage for a number of minutes (a grid event)."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--location", required=True, help="The location's id.")
        parser.add_argument(
            "--reduce-percent", default="20", help="Budget reduction in percent (default 20)."
        )
        parser.add_argument("--minutes", type=int, required=True, help="How long the event lasts.")
        parser.add_argument("--starts-in", type=int, default=0, help="Minutes from now until it starts.")

    def handle(
        self, *args: Any, location: str, reduce_percent: str, minutes: int, starts_in: int, **options: Any
    ) -> None:
        try:
            place = Location.objects.get(pk=int(location))
        except (ValueError, Location.DoesNotExist):
            raise CommandError(f"No location with id {location!r}.") from None
        try:
            percent = Decimal(reduce_percent)
        except InvalidOperation:
            raise CommandError(f"--reduce-percent must be a number, got {reduce_percent!r}.") from None
        if not percent.is_finite():
            raise CommandError(f"--reduce-percent must be a number, got {reduce_percent!r}.")
        if minutes <= 0 or starts_in < 0:
            raise CommandError("--minutes must be positive and --starts-in not negative.")
        sites = list(Site.objects.filter(location=place).order_by("pk"))
        if not sites:
            raise CommandError(f"Location {place.pk} has no site: set one with manage.py site_set first.")
        starts_at = clock.now() + timedelta(minutes=starts_in)
        try:
            event = services.grid_event_declare(
                sites=sites,
                reduce_percent=percent,
                starts_at=starts_at,
                ends_at=starts_at + timedelta(minutes=minutes),
                source="manage.py",
            )
        except ApplicationError as exc:
            raise CommandError(exc.detail) from None
        self.stdout.write(
            f"Grid event {event.pk}: -{event.reduce_percent}% at {len(sites)} site(s) "
            f"from {event.starts_at.isoformat()} until {event.ends_at.isoformat()}."
        )
        for site in sites:
            cut = site.max_current_a * (100 - event.reduce_percent) / 100
            self.stdout.write(f"  site {site.pk} ({site}): {site.max_current_a} A -> {cut:.1f} A per phase")
