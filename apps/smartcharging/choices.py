from django.db import models
from django.utils.translation import gettext_lazy as _


class ProfilePurpose(models.TextChoices):
    """What a charging profile of ours is for (OCPP 1.6 names; 2.0.1 says ChargingStationMaxProfile)."""

    TX = "TxProfile", _("Running transaction")
    TX_DEFAULT = "TxDefaultProfile", _("Default for new transactions")
    CHARGER_MAX = "ChargePointMaxProfile", _("Charger maximum")


class RateUnit(models.TextChoices):
    """The unit of a charging schedule: amperes per phase or watts."""

    AMPERES = "A", _("Amperes")
    WATTS = "W", _("Watts")


class ProfileStatus(models.TextChoices):
    """Where a profile we sent stands."""

    SENT = "sent", _("Sent")
    ACCEPTED = "accepted", _("Accepted")
    REJECTED = "rejected", _("Rejected")
    FAILED = "failed", _("Not delivered")


class GridEventStatus(models.TextChoices):
    """Where a grid event stands (as the API shows it)."""

    SCHEDULED = "scheduled", _("Scheduled")
    ACTIVE = "active", _("Active")
    ENDED = "ended", _("Ended")
