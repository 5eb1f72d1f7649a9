"""`manage.py check_services`: do the database, the channel layer and the Celery broker answer?

`make run` calls it before migrating, so a wrong or unreachable DATABASE_URL / REDIS_URL stops the start
with one line naming the part, the variable and the (masked) URL, instead of a traceback later.
"""

from __future__ import annotations

from typing import Any

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError, CommandParser

from cpo import health
from cpo.redact import mask_url


def _parts() -> dict[str, tuple[str, str]]:
    """{part: (environment variable, URL in use)} for the parts /readyz checks."""
    channel_host = settings.CHANNEL_LAYERS["default"]["CONFIG"]["hosts"][0]
    return {
        "database": ("DATABASE_URL", settings.DATABASE_URL),
        "channel_layer": (
            "REDIS_URL",
            channel_host["address"] if isinstance(channel_host, dict) else str(channel_host),
        ),
        "broker": ("REDIS_URL", settings.CELERY_BROKER_URL),
    }


class Command(BaseCommand):
    help = "Check that the database, the channel layer (Redis) and the Celery broker answer."
    requires_system_checks: list[str] = []

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument(
            "--timeout",
            type=float,
            default=None,
            help="seconds to wait for each server (default: CPO_HEALTH_TIMEOUT_S)",
        )

    def handle(self, *args: Any, **options: Any) -> None:
        if options["timeout"] is not None:
            settings.CPO_HEALTH_TIMEOUT_S = options["timeout"]
        results = health.run_checks()
        failures = []
        for part, (variable, url) in _parts().items():
            result = " ".join(results.get(part, "error: not checked").split())
            line = f"{part}: {result} ({variable}={mask_url(url)})"
            if result == "ok":
                self.stdout.write(line)
            else:
                failures.append(line)
        if failures:
            raise CommandError("servers do not answer:\n  " + "\n  ".join(failures))
