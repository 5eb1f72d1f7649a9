from django.apps import AppConfig
from django.utils.translation import gettext_lazy as _


class TariffsConfig(AppConfig):
    name = "apps.tariffs"
    label = "tariffs"
    verbose_name = _("Tariffs and pricing")

    def ready(self) -> None:
        from apps.charging import hooks as charging_hooks
        from apps.stations import hooks as station_hooks
        from apps.tariffs import selectors, services

        # Tariffs reacts to charging and stations through their hooks (docs/architecture.md, Layering),
        # inside their transactions: a session's tariff is frozen as it starts, what the car does is
        # recorded as the charger reports it, and the CDR is issued on commit once nothing can change it.
        charging_hooks.session_started.register(services.session_tariff_on_start)
        charging_hooks.session_driver_known.register(services.session_tariff_driver_known)
        charging_hooks.transaction_event_applied.register(services.session_activity_from_event)
        charging_hooks.session_stopped.register(services.session_tariff_on_stop)
        charging_hooks.session_price.provide(selectors.session_price)
        station_hooks.connector_status_reported.register(services.session_activity_from_status)
        # The driver's data export lists their receipts.
        charging_hooks.driver_export_parts.register(selectors.driver_receipts_export)
