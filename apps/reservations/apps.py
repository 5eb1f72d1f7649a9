from django.apps import AppConfig
from django.utils.translation import gettext_lazy as _


class ReservationsConfig(AppConfig):
    """Reservations: a driver holds a connector for a while, and only that driver can charge there. Sits
    above billing and below the gateway (docs/architecture.md, Layering): it reaches chargers through
    charging's `charger_control` port; the gateway reports the charger's answers here."""

    name = "apps.reservations"
    label = "reservations"
    verbose_name = _("Reservations")

    def ready(self) -> None:
        from apps.charging import hooks as charging_hooks
        from apps.reservations.services import (
            ReservationsGuard,
            reservation_connector_status,
            reservation_consume_on_start,
        )
        from apps.stations import hooks as stations_hooks

        # Charging asks who holds an EVSE (the holder may start there, others may not) and tells us when a
        # transaction starts (it consumes the holder's reservation).
        charging_hooks.reservation_guard.provide(ReservationsGuard())
        charging_hooks.session_started.register(reservation_consume_on_start)
        # A 1.6 charger ends its own reservation by reporting the connector Available again.
        stations_hooks.connector_status_reported.register(reservation_connector_status)
