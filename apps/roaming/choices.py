"""OCPI 2.2.1 enumerations the roaming app stores (values exactly as the specification spells them)."""

from django.db import models
from django.utils.translation import gettext_lazy as _


class PartyStatus(models.TextChoices):
    """Where a connection with another party stands. PENDING: we issued a token A (or were given theirs)
    and the credentials handshake has not happened yet; REGISTERED: tokens B/C exchanged; UNREGISTERED:
    either side ended it (DELETE credentials), no token works any more."""

    PENDING = "PENDING", _("Pending (token A issued)")
    REGISTERED = "REGISTERED", _("Registered")
    UNREGISTERED = "UNREGISTERED", _("Unregistered")


class TokenType(models.TextChoices):
    AD_HOC_USER = "AD_HOC_USER", _("Ad hoc user")
    APP_USER = "APP_USER", _("App user")
    OTHER = "OTHER", _("Other")
    RFID = "RFID", _("RFID")


class WhitelistType(models.TextChoices):
    """OCPI WhitelistType: how a token may be authorised without asking its eMSP."""

    ALWAYS = "ALWAYS", _("Always (from the stored token)")
    ALLOWED = "ALLOWED", _("Allowed (stored token; real-time allowed)")
    ALLOWED_OFFLINE = "ALLOWED_OFFLINE", _("Allowed offline (real-time first)")
    NEVER = "NEVER", _("Never (real-time only)")


class SessionStatus(models.TextChoices):
    ACTIVE = "ACTIVE", _("Active")
    COMPLETED = "COMPLETED", _("Completed")
    INVALID = "INVALID", _("Invalid")
    PENDING = "PENDING", _("Pending")
    RESERVATION = "RESERVATION", _("Reservation")


class AuthMethod(models.TextChoices):
    AUTH_REQUEST = "AUTH_REQUEST", _("Real-time authorisation")
    COMMAND = "COMMAND", _("Command")
    WHITELIST = "WHITELIST", _("Whitelist")


class PushStatus(models.TextChoices):
    PENDING = "PENDING", _("Pending")
    SENT = "SENT", _("Sent")
    RETRYING = "RETRYING", _("Retrying")
    FAILED = "FAILED", _("Failed")


class CommandType(models.TextChoices):
    CANCEL_RESERVATION = "CANCEL_RESERVATION", _("Cancel reservation")
    RESERVE_NOW = "RESERVE_NOW", _("Reserve now")
    START_SESSION = "START_SESSION", _("Start session")
    STOP_SESSION = "STOP_SESSION", _("Stop session")
    UNLOCK_CONNECTOR = "UNLOCK_CONNECTOR", _("Unlock connector")


class CommandResultType(models.TextChoices):
    ACCEPTED = "ACCEPTED", _("Accepted")
    CANCELED_RESERVATION = "CANCELED_RESERVATION", _("Reservation cancelled")
    EVSE_OCCUPIED = "EVSE_OCCUPIED", _("EVSE occupied")
    EVSE_INOPERATIVE = "EVSE_INOPERATIVE", _("EVSE inoperative")
    FAILED = "FAILED", _("Failed")
    NOT_SUPPORTED = "NOT_SUPPORTED", _("Not supported")
    REJECTED = "REJECTED", _("Rejected")
    TIMEOUT = "TIMEOUT", _("Timeout")
    UNKNOWN_RESERVATION = "UNKNOWN_RESERVATION", _("Unknown reservation")
