"""`manage.py billing_demo_cards`: give the demo drivers who pay by card a test card (Stripe's pm_card_visa)
at the configured Stripe server (`make run`: localstripe). Drivers who have a card keep theirs."""

from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from apps.accounts.models import User
from apps.billing import services
from cpo.exceptions import ApplicationError

DEMO_DOMAIN = "@demo.cpo"
TEST_CARD = "pm_card_visa"


class Command(BaseCommand):
    help = (
        "Attach Stripe's test card (pm_card_visa) to the demo drivers without a customer account "
        f"(e-mail ending {DEMO_DOMAIN}) that have no card yet, or to the drivers named by --email."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--email", action="append", default=[], help="A driver's e-mail (repeatable).")

    def handle(self, *args: Any, email: list[str], **options: Any) -> None:
        drivers = User.objects.filter(is_active=True, is_staff=False, is_superuser=False, organisation=None)
        if email:
            drivers = drivers.filter(email__in=[e.strip().lower() for e in email])
            missing = {e.strip().lower() for e in email} - set(drivers.values_list("email", flat=True))
            if missing:
                raise CommandError(f"No such driver: {', '.join(sorted(missing))}")
        else:
            drivers = drivers.filter(email__endswith=DEMO_DOMAIN, driver_profile__customer_account=None)
        added = 0
        for driver in drivers.order_by("pk"):
            if services.payment_methods_of(user=driver).exists():
                continue
            try:
                method, _created = services.payment_method_attach(user=driver, payment_method_id=TEST_CARD)
            except ApplicationError as exc:
                raise CommandError(f"{driver.email}: {exc.code}: {exc.detail}") from exc
            added += 1
            self.stdout.write(
                f"{driver.email}: test card {method.brand} •••• {method.last4} ({method.stripe_id})"
            )
        self.stdout.write(f"demo cards: {added} added")
