from django.db import models
from django.utils.translation import gettext_lazy as _


class CommandStatus(models.TextChoices):
    """Where a command to a charger stands. Everything but PENDING and SENT is final."""

    PENDING = "pending", _("Waiting to be sent")
    SENT = "sent", _("Sent, awaiting the answer")
    ANSWERED = "answered", _("Answered")
    CALL_ERROR = "call_error", _("Charger answered with an error")
    TIMEOUT = "timeout", _("No answer in time")
    CHARGER_OFFLINE = "charger_offline", _("Charger offline")
    CHARGER_DISCONNECTED = "charger_disconnected", _("Charger disconnected before answering")


OPEN_COMMAND_STATUSES = frozenset({CommandStatus.PENDING, CommandStatus.SENT})
FINAL_COMMAND_STATUSES = frozenset(CommandStatus.values) - OPEN_COMMAND_STATUSES


class Direction(models.TextChoices):
    IN = "in", _("Charger → us")
    OUT = "out", _("Us → charger")
