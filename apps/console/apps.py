from django.apps import AppConfig
from django.utils.translation import gettext_lazy as _


class ConsoleConfig(AppConfig):
    """The operations console at the top of the layers (docs/architecture.md, Layering): the staff's
    dashboard, alerts, status and connection history and uptime. It reads every app and hears the lower
    apps through their hooks; nothing imports it."""

    name = "apps.console"
    label = "console"
    verbose_name = _("Operations console")

    def ready(self) -> None:
        from apps.billing import hooks as billing_hooks
        from apps.console import receivers
        from apps.ocpp_gateway import hooks as gateway_hooks
        from apps.smartcharging import hooks as smartcharging_hooks
        from apps.stations import hooks as stations_hooks

        stations_hooks.status_changed.register(receivers.status_changed)
        stations_hooks.charge_point_booted.register(receivers.charge_point_booted)
        stations_hooks.availability_changed.register(receivers.availability_changed)
        gateway_hooks.connections_changed.register(receivers.connections_changed)
        smartcharging_hooks.charging_profile_answered.register(receivers.charging_profile_answered)
        billing_hooks.payment_capture_failed.register(receivers.payment_capture_failed)
