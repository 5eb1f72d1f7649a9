from django.apps import AppConfig
from django.utils.translation import gettext_lazy as _


class RoamingConfig(AppConfig):
    name = "apps.roaming"
    label = "roaming"
    verbose_name = _("Roaming (OCPI)")

    def ready(self) -> None:
        from apps.charging import hooks as charging_hooks
        from apps.roaming import authorization, sessions
        from apps.stations import hooks as station_hooks
        from apps.tariffs import hooks as tariff_hooks

        # Roaming reacts to charging, stations and tariffs through their hooks (docs/architecture.md):
        # eMSPs' tokens are authorised at our chargers, their drivers' sessions and CDRs pushed to them,
        # EVSE status changes pushed to every registered party.
        charging_hooks.roaming_authorizer.provide(authorization.RoamingAuthorizer())
        charging_hooks.session_started.register(sessions.roaming_session_on_start)
        charging_hooks.session_stopped.register(sessions.roaming_session_on_stop)
        charging_hooks.transaction_event_applied.register(sessions.roaming_session_on_event)
        tariff_hooks.cdr_issued.register(sessions.roaming_cdr_on_issue)
        station_hooks.connector_status_reported.register(sessions.evse_status_on_report)
