from django.apps import AppConfig
from django.utils.translation import gettext_lazy as _


class BillingConfig(AppConfig):
    """Payments: a Stripe customer per driver, their cards, Stripe's webhooks and disputes. Billing sits
    above tariffs (docs/architecture.md, Layering): it may import tariffs, charging and accounts; they
    never import it."""

    name = "apps.billing"
    label = "billing"
    verbose_name = _("Billing and payments")

    def ready(self) -> None:
        from apps.accounts import hooks as accounts_hooks
        from apps.billing import selectors, services
        from apps.billing.payments import CardHolds
        from apps.billing.settlement import DebtStanding
        from apps.charging import hooks as charging_hooks

        # A driver's start is paid by a card hold (charging asks through its port, docs/architecture.md).
        charging_hooks.start_payment.provide(CardHolds())
        # A driver with an unpaid debt is blocked at the chargers until it is paid.
        charging_hooks.driver_standing.provide(DebtStanding())
        # An erased driver's cards are forgotten and their Stripe customer deleted (after commit).
        accounts_hooks.driver_erased.register(services.driver_erase)
        # The driver's data export lists their saved cards (never a card number) and payments.
        charging_hooks.driver_export_parts.register(selectors.driver_payments_export)
