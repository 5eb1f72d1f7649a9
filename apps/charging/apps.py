from django.apps import AppConfig
from django.utils.translation import gettext_lazy as _


class ChargingConfig(AppConfig):
    name = "apps.charging"
    label = "charging"
    verbose_name = _("Charging")

    def ready(self) -> None:
        from apps.accounts import hooks as accounts_hooks
        from apps.accounts.tenancy import register_shared_link
        from apps.charging import card_links, selectors, services
        from cpo import partitions

        accounts_hooks.driver_erased.register(card_links.card_links_erase)

        register_shared_link("accounts.User", selectors.driver_link_by_sessions_q)
        register_shared_link("accounts.IdToken", selectors.idtoken_link_by_sessions_q)
        partitions.register(services.METER_SAMPLES_PARTITIONS)
