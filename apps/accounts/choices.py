from django.db import models
from django.utils.translation import gettext_lazy as _


class IdTokenType(models.TextChoices):
    """OCPP 2.0.1 IdTokenEnumType; 1.6 idTags are ISO14443/ISO15693 cards or Central app tokens."""

    CENTRAL = "Central", _("App / central token")
    EMAID = "eMAID", _("eMAID (contract id)")
    ISO14443 = "ISO14443", _("RFID card (ISO 14443)")
    ISO15693 = "ISO15693", _("RFID card (ISO 15693)")
    KEY_CODE = "KeyCode", _("Key code")
    LOCAL = "Local", _("Local")
    MAC_ADDRESS = "MacAddress", _("MAC address")
    NO_AUTHORIZATION = "NoAuthorization", _("No authorisation")


RFID_TYPES = frozenset({IdTokenType.ISO14443, IdTokenType.ISO15693})


class IdTokenStatus(models.TextChoices):
    """The statuses a token may carry in our registry (OCPP AuthorizationStatus subset)."""

    ACCEPTED = "Accepted", _("Accepted")
    BLOCKED = "Blocked", _("Blocked")
    EXPIRED = "Expired", _("Expired")
    INVALID = "Invalid", _("Invalid")


class AuditOutcome(models.TextChoices):
    SUCCEEDED = "succeeded", _("Succeeded")
    FAILED = "failed", _("Failed")
    DENIED = "denied", _("Denied")


class Role(models.TextChoices):
    """Staff roles; each is a permission group created by a migration (see roles.py)."""

    OPERATOR_ADMIN = "Operator admin", _("Operator admin")
    TECHNICIAN = "Technician", _("Technician")
    SUPPORT = "Support", _("Support")
    FINANCE = "Finance", _("Finance")
