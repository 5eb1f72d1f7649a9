from django.db import models
from django.utils.translation import gettext_lazy as _


class ReservationStatus(models.TextChoices):
    """PENDING (ReserveNow sent) → RESERVED → CONSUMED | CANCELLED | EXPIRED; PENDING → FAILED (the charger
    refused, was offline or did not answer)."""

    PENDING = "PENDING", _("Pending")
    RESERVED = "RESERVED", _("Reserved")
    CONSUMED = "CONSUMED", _("Consumed")
    CANCELLED = "CANCELLED", _("Cancelled")
    EXPIRED = "EXPIRED", _("Expired")
    FAILED = "FAILED", _("Failed")


ACTIVE_STATUSES = (ReservationStatus.PENDING, ReservationStatus.RESERVED)
