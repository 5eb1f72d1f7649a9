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
    RECONCILED = "reconciled", _("Closed by reconciliation: the charger's stop never came")
    LATE_STOP = "late_stop", _("The charger's own stop came after the session was closed")


class ClosedBy(models.TextChoices):
    """Stop reasons of a session the product closed itself because the charger's stop never came
    (`ChargingSession.stop_reason`; the charger's own reasons are OCPP's)."""

    CHARGER_IDLE = "reconciled_charger_idle", _("Reconciled: the connector reported it was free")
    REBOOT = "reconciled_reboot", _("Reconciled: the charger rebooted")
    TIMEOUT = "reconciled_timeout", _("Reconciled: no sign of life")
    OPERATOR = "force_closed", _("Closed by an operator")


class ProbeOutcome(models.TextChoices):
    """What became of the question reconciliation asked a charger about a session."""

    WAITING = "", _("Waiting for the answer")
    ANSWERED = "answered", _("Answered")
    UNANSWERED = "unanswered", _("Not answered (offline, refused or timed out)")


class DriverSessionStatus(models.TextChoices):
    """A driver's charge as the driver API runs it: INITIATED → AUTHORISING → STARTING → ACTIVE →
    STOPPING → COMPLETED, or FAILED (with a reason) before the charger started. A charge started at the
    charger with the driver's card enters at ACTIVE."""

    INITIATED = "INITIATED", _("Initiated")
    AUTHORISING = "AUTHORISING", _("Authorising")
    STARTING = "STARTING", _("Starting")
    ACTIVE = "ACTIVE", _("Active")
    STOPPING = "STOPPING", _("Stopping")
    COMPLETED = "COMPLETED", _("Completed")
    FAILED = "FAILED", _("Failed")


DRIVER_SESSION_FINAL = frozenset({DriverSessionStatus.COMPLETED, DriverSessionStatus.FAILED})


class DriverSessionFailure(models.TextChoices):
    """Why a driver's charge failed to start (stable codes: the mobile app switches on them)."""

    NONE = "", _("None")
    CHARGER_OFFLINE = "charger_offline", _("The charger is offline")
    CHARGER_REJECTED = "charger_rejected", _("The charger refused to start")
    START_TIMEOUT = "start_timeout", _("The charger did not start in time")
    NOT_AUTHORISED = "not_authorised", _("The driver's token was not accepted")


class DriverSessionSource(models.TextChoices):
    APP = "app", _("Started in the app")
    CHARGER = "charger", _("Started at the charger")


class CardLinkStatus(models.TextChoices):
    """A driver's request to link a card, proven by presenting it at a charger (stable codes: the mobile
    app switches on them). PENDING until the card is presented there, the window ends or the driver
    cancels it; LINKED or REFUSED once presented."""

    PENDING = "pending", _("Waiting for the card at the charger")
    LINKED = "linked", _("Linked")
    REFUSED = "refused", _("Refused")
    EXPIRED = "expired", _("Expired")
    CANCELLED = "cancelled", _("Cancelled")
