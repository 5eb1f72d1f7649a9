from django.db import models
from django.utils.translation import gettext_lazy as _


class OcppProtocol(models.TextChoices):
    OCPP16 = "ocpp1.6", "OCPP 1.6J"
    OCPP201 = "ocpp2.0.1", "OCPP 2.0.1"
    OCPP21 = "ocpp2.1", "OCPP 2.1"


class RegistrationStatus(models.TextChoices):
    PENDING = "Pending", _("Pending")
    ACCEPTED = "Accepted", _("Accepted")
    REJECTED = "Rejected", _("Rejected")


class SecurityProfile(models.IntegerChoices):
    NONE = 0, _("0 - no authentication (trusted networks only)")
    BASIC = 1, _("1 - HTTP Basic authentication")
    TLS_BASIC = 2, _("2 - TLS with HTTP Basic authentication")


class Availability(models.TextChoices):
    OPERATIVE = "Operative", _("Operative")
    INOPERATIVE = "Inoperative", _("Inoperative")


class ConnectorStatus(models.TextChoices):
    """Union of OCPP 1.6 ChargePointStatus and 2.0.1 ConnectorStatusEnumType, plus Unknown."""

    AVAILABLE = "Available", _("Available")
    PREPARING = "Preparing", _("Preparing")
    CHARGING = "Charging", _("Charging")
    SUSPENDED_EVSE = "SuspendedEVSE", _("Suspended by charger")
    SUSPENDED_EV = "SuspendedEV", _("Suspended by vehicle")
    FINISHING = "Finishing", _("Finishing")
    RESERVED = "Reserved", _("Reserved")
    OCCUPIED = "Occupied", _("Occupied")
    UNAVAILABLE = "Unavailable", _("Unavailable")
    FAULTED = "Faulted", _("Faulted")
    UNKNOWN = "Unknown", _("Unknown")


class ConnectorStandard(models.TextChoices):
    """OCPI 2.2.1 ConnectorType values for the standards in use in Europe and beyond."""

    IEC_62196_T2 = "IEC_62196_T2", _("IEC 62196 Type 2")
    IEC_62196_T2_COMBO = "IEC_62196_T2_COMBO", _("CCS2 (IEC 62196 Type 2 Combo)")
    CHADEMO = "CHADEMO", _("CHAdeMO")
    IEC_62196_T1 = "IEC_62196_T1", _("IEC 62196 Type 1")
    IEC_62196_T1_COMBO = "IEC_62196_T1_COMBO", _("CCS1 (IEC 62196 Type 1 Combo)")
    IEC_62196_T3C = "IEC_62196_T3C", _("IEC 62196 Type 3C")
    DOMESTIC_F = "DOMESTIC_F", _("Domestic socket type F (Schuko)")
    GBT_AC = "GBT_AC", _("GB/T AC")
    GBT_DC = "GBT_DC", _("GB/T DC")
    TESLA_S = "TESLA_S", _("Tesla (NACS)")
    IEC_80005_1 = "MCS", _("Megawatt Charging System")


class ConnectorFormat(models.TextChoices):
    SOCKET = "SOCKET", _("Socket")
    CABLE = "CABLE", _("Cable")


class PowerType(models.TextChoices):
    AC_1_PHASE = "AC_1_PHASE", _("AC, 1 phase")
    AC_2_PHASE = "AC_2_PHASE", _("AC, 2 phases")
    AC_3_PHASE = "AC_3_PHASE", _("AC, 3 phases")
    DC = "DC", _("DC")
