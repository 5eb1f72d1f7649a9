from django.apps import AppConfig
from django.utils.translation import gettext_lazy as _


class SmartChargingConfig(AppConfig):
    name = "apps.smartcharging"
    label = "smartcharging"
    verbose_name = _("Smart charging")

    def ready(self) -> None:
        from apps.charging import hooks as charging_hooks
        from apps.smartcharging import services

        # A start, a stop or a change in what a car draws changes how its site's budget is shared:
        # rebalance it after commit (coalesced), through the charging hooks (docs/architecture.md, Layering).
        charging_hooks.session_started.register(services.session_started)
        charging_hooks.session_stopped.register(services.session_stopped)
        charging_hooks.meter_values_recorded.register(services.meter_values_recorded)
