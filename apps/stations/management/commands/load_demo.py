"""`manage.py load_demo`: load fixtures/demo.json once, so `make run` never overwrites an operator's edits."""

from __future__ import annotations

import json
from collections import Counter
from typing import Any

from django.apps import apps
from django.conf import settings
from django.core.management import call_command
from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.db import transaction

from apps.accounts.models import Organisation
from apps.accounts.services import audit_record_create

DEMO_FIXTURE = settings.BASE_DIR / "fixtures" / "demo.json"
# The fixture's parent organisation: when it exists, the demo data counts as loaded.
DEMO_ORGANISATION_SLUG = "demo-voltaro"
# Documented in fixtures/make_demo.py, which generates the fixture.
DEMO_LOGIN = "operator@demo.cpo (or admin@demo.cpo, the superuser) with the password demo-password-2026"


class Command(BaseCommand):
    help = (
        "Load the demo data (fixtures/demo.json) unless the demo organisation already exists. Refuses to "
        "overwrite other rows that hold the demo's ids. --force loads it anyway, overwriting those rows."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument(
            "--force",
            action="store_true",
            help="Load even when the demo data or rows with its ids exist (restores the demo rows).",
        )

    def handle(self, *args: Any, force: bool, **options: Any) -> None:
        if not force and Organisation.objects.filter(slug=DEMO_ORGANISATION_SLUG).exists():
            self.stdout.write(
                f"demo data already present (organisation {DEMO_ORGANISATION_SLUG} exists): nothing changed"
            )
            return
        try:
            records = json.loads(DEMO_FIXTURE.read_text(encoding="utf-8"))
        except (OSError, ValueError) as exc:
            raise CommandError(f"Cannot read the demo fixture {DEMO_FIXTURE}: {exc}") from exc
        if not force:
            taken = _rows_in_the_way(records)
            if taken:
                raise CommandError(
                    f"The demo data would overwrite existing rows ({taken}); nothing loaded. "
                    "Use --force to overwrite them."
                )
        with transaction.atomic():
            call_command("loaddata", str(DEMO_FIXTURE), verbosity=0)
            audit_record_create(
                actor=None,
                action="demo.load",
                source="command",
                detail={"fixture": "fixtures/demo.json", "objects": len(records), "force": force},
            )
        self.stdout.write(f"loaded demo data: {_summary(records)}")
        self.stdout.write(f"log in at /admin/ as {DEMO_LOGIN}")


def _rows_in_the_way(records: list[dict[str, Any]]) -> str:
    """'app.model pk, pk; ...' for fixture rows whose primary keys are already taken, or ''."""
    pks_by_label: dict[str, list[Any]] = {}
    for record in records:
        pks_by_label.setdefault(record["model"], []).append(record["pk"])
    taken = []
    for label, pks in pks_by_label.items():
        model = apps.get_model(label)
        existing = sorted(model._default_manager.filter(pk__in=pks).values_list("pk", flat=True))
        if existing:
            shown = ", ".join(str(pk) for pk in existing[:5]) + (", ..." if len(existing) > 5 else "")
            taken.append(f"{label} {shown}")
    return "; ".join(taken)


def _summary(records: list[dict[str, Any]]) -> str:
    counts = Counter(record["model"] for record in records)
    return ", ".join(
        f"{count} {apps.get_model(label)._meta.verbose_name_plural}" for label, count in counts.items()
    )
