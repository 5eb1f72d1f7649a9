from django.db import models
from django.utils.translation import gettext_lazy as _


class TariffType(models.TextChoices):
    """OCPI 2.2.1 TariffType (empty: not said)."""

    NONE = "", _("Not specified")
    AD_HOC_PAYMENT = "AD_HOC_PAYMENT", _("Ad hoc payment")
    PROFILE_CHEAP = "PROFILE_CHEAP", _("Profile: cheapest")
    PROFILE_FAST = "PROFILE_FAST", _("Profile: fastest")
    PROFILE_GREEN = "PROFILE_GREEN", _("Profile: greenest")
    REGULAR = "REGULAR", _("Regular")


class DayOfWeek(models.TextChoices):
    MONDAY = "MONDAY", _("Monday")
    TUESDAY = "TUESDAY", _("Tuesday")
    WEDNESDAY = "WEDNESDAY", _("Wednesday")
    THURSDAY = "THURSDAY", _("Thursday")
    FRIDAY = "FRIDAY", _("Friday")
    SATURDAY = "SATURDAY", _("Saturday")
    SUNDAY = "SUNDAY", _("Sunday")


class ReservationRestriction(models.TextChoices):
    NONE = "", _("Not restricted")
    RESERVATION = "RESERVATION", _("During a reservation")
    RESERVATION_EXPIRES = "RESERVATION_EXPIRES", _("When a reservation expires")


class ActivityState(models.TextChoices):
    """What the car was doing from a moment on, as the charger reported it."""

    CHARGING = "CHARGING", _("Drawing power")
    PARKING = "PARKING", _("Not drawing power")


class CdrKind(models.TextChoices):
    CDR = "CDR", _("Charge detail record")
    CREDIT = "CREDIT", _("Credit")


class PricingNote(models.TextChoices):
    """Why a charge detail record is priced as it is, when that is not simply its tariff."""

    NONE = "", _("Priced by its tariff")
    NO_TARIFF = "NO_TARIFF", _("Free: no tariff in force")
