from django.apps import AppConfig
from django.utils.translation import gettext_lazy as _


class OcppGatewayConfig(AppConfig):
    name = "apps.ocpp_gateway"
    label = "ocpp_gateway"
    verbose_name = _("OCPP gateway")

    def ready(self) -> None:
        # Validation in a thread pool costs more than it saves for OCPP-sized payloads (FIELD-NOTES:
        # +74% throughput without it); validation itself still happens.
        import ocpp.messages

        from apps.charging import hooks as charging_hooks
        from apps.charging import intents
        from apps.ocpp_gateway import localauth, messagelog, services
        from apps.ocpp_gateway.intents import GatewayChargerControl
        from cpo import metrics, partitions

        ocpp.messages.ASYNC_VALIDATION = False
        partitions.register(messagelog.PARTITIONS)
        # Charging asks for "start charging token X on EVSE n" / "stop transaction T"; the gateway builds
        # and sends the messages (docs/architecture.md, Layering).
        intents.charger_control.provide(GatewayChargerControl())
        # A driver blocked for an unpaid debt (or unblocked): chargers with a local list learn it.
        charging_hooks.driver_standing_changed.register(localauth.local_lists_driver_standing_changed)
        # What /metrics reads when scraped: the messages kept for replay that have not been replayed yet.
        metrics.gauge_register(
            "cpo_ocpp_replay_journal_depth",
            "Charger messages kept for replay (not processed yet).",
            services.replay_journal_depth,
        )
