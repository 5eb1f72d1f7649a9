from django.apps import AppConfig
from django.utils.translation import gettext_lazy as _


class ChargingConfig(AppConfig):
    name = "apps.charging"
    label = "charging"
    verbose_name = _("Charging")
