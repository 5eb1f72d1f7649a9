from django.db import models
from django.utils.translation import gettext_lazy as _


class AlertKind(models.TextChoices):
    OFFLINE = "offline", _("charger offline")
    FAULTED = "faulted", _("connector faulted")
    BOOT_LOOP = "boot_loop", _("boot loop")
    PROFILE_REJECTED = "profile_rejected", _("charging profile rejected")
    CAPTURE_FAILED = "capture_failed", _("payment capture failed")


class DeliveryChannel(models.TextChoices):
    EMAIL = "email", _("e-mail")
    WEBHOOK = "webhook", _("webhook")


class DeliveryStatus(models.TextChoices):
    PENDING = "pending", _("pending")
    DELIVERED = "delivered", _("delivered")
    FAILED = "failed", _("failed (gave up)")


class ChargerState(models.TextChoices):
    """A charger's state on the dashboard: its worst current condition, in this order."""

    OFFLINE = "offline", _("offline")
    FAULTED = "faulted", _("faulted")
    UNAVAILABLE = "unavailable", _("unavailable")
    CHARGING = "charging", _("charging")
    AVAILABLE = "available", _("available")
