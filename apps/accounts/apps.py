from django.apps import AppConfig
from django.utils.translation import gettext_lazy as _


class AccountsConfig(AppConfig):
    name = "apps.accounts"
    label = "accounts"
    verbose_name = _("Accounts and organisations")

    def ready(self) -> None:
        from apps.accounts import selectors
        from apps.accounts.tenancy import register_shared_link

        register_shared_link("accounts.User", selectors.driver_link_by_cards_q)
        register_shared_link("accounts.IdToken", selectors.idtoken_link_by_network_q)
        register_shared_link("accounts.DriverProfile", selectors.driverprofile_link_q)
