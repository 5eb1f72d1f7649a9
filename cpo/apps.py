from django.apps import AppConfig
from django.utils.translation import gettext_lazy as _


class CpoKernelConfig(AppConfig):
    name = "cpo"
    verbose_name = _("CPO kernel")
