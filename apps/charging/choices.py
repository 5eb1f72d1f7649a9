from django.db import models
from django.utils.translation import gettext_lazy as _


class SessionStatus(models.TextChoices):
    """Lifecycle of a charging session as the charger reports it (the driver API adds the steps
    before the charger starts)."""

    ACTIVE = "ACTIVE", _("Active")
    COMPLETED = "COMPLETED", _("Completed")


class AuthorizationStatus(models.TextChoices):
    """OCPP AuthorizationStatus (1.6 spelling; 2.0.1 maps onto it)."""

    NOT_YET = "", _("Not yet authorised")
    ACCEPTED = "Accepted", _("Accepted")
    BLOCKED = "Blocked", _("Blocked")
    EXPIRED = "Expired", _("Expired")
    INVALID = "Invalid", _("Invalid")
    CONCURRENT_TX = "ConcurrentTx", _("Already charging elsewhere")


class ReviewReason(models.TextChoices):
    NONE = "", _("None")
    UNKNOWN_TOKEN = "unknown_token", _("Started with a token we do not know")
    TOKEN_NOT_ACCEPTED = "token_not_accepted", _("Started with a token that is not accepted")
    METER_WENT_BACKWARDS = "meter_backwards", _("Meter stop below meter start")
    MISSING_EVENTS = "missing_events", _("Transaction events missing (sequence gap)")
