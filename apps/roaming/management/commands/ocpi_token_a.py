"""Issue a credentials token A for a party that will register with us (OCPI credentials handshake).
The token is printed once; only its digest is kept."""

from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from apps.accounts.models import Organisation
from apps.roaming.credentials import ocpi_base_url, token_a_issue
from apps.roaming.protocol import OcpiError


class Command(BaseCommand):
    help = "Issue an OCPI credentials token A for a new roaming party and print it once."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--name", default="New party", help="What operators call the party.")
        parser.add_argument(
            "--operator", help="The slug of our operator the party connects to (default: the only one)."
        )

    def handle(self, *args: Any, **options: Any) -> None:
        if options["operator"]:
            organisation = Organisation.objects.filter(slug=options["operator"]).first()
            if organisation is None:
                raise CommandError(f"No operator with slug {options['operator']!r}.")
        else:
            operators = list(Organisation.objects.filter(parent__isnull=True)[:2])
            if len(operators) != 1:
                raise CommandError("Name the operator with --operator <slug> (there is not exactly one).")
            organisation = operators[0]
        name = options["name"].strip()
        if not name or len(name) > 100:
            raise CommandError("--name must have 1 to 100 characters.")
        party, token = token_a_issue(organisation=organisation, name=name)
        self.stdout.write(f"Party {party.pk} ({party.name}) for {organisation.slug}")
        self.stdout.write(f"Token A (shown once): {token}")
        try:
            self.stdout.write(f"Our versions URL: {ocpi_base_url()}/ocpi/versions")
        except OcpiError:
            self.stdout.write("Our versions URL: <CPO_OCPI_BASE_URL>/ocpi/versions (set CPO_OCPI_BASE_URL)")
