"""The simulated charger's configuration keys (OCPP 1.6 chapter 9 and the security whitepaper), in memory.

Values are kept as the strings OCPP carries; typed readers (`integer`, `boolean`, `items`) parse them.
`change()` answers ChangeConfiguration by the specification's rules: an unknown key is NotSupported, a
read-only key or a value of the wrong type or range is Rejected, anything else is applied and Accepted.
AuthorizationKey is write-only: GetConfiguration lists it without a value.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

# Measurands the simulated meter can report.
SUPPORTED_MEASURANDS = frozenset(
    {
        "Energy.Active.Import.Register",
        "Power.Active.Import",
        "Power.Offered",
        "Current.Import",
        "Current.Offered",
        "Voltage",
    }
)
FEATURE_PROFILES = "Core,FirmwareManagement,LocalAuthListManagement,Reservation,SmartCharging,RemoteTrigger"
MEASURAND_LIST_MAX = 6


@dataclass(frozen=True, slots=True)
class KeySpec:
    """One configuration key: its type (bool, int, csl or str), whether the CSMS may change it, and limits."""

    name: str
    kind: str
    readonly: bool = False
    write_only: bool = False
    minimum: int | None = None
    maximum: int | None = None
    max_items: int | None = None
    allowed_items: frozenset[str] | None = None
    min_length: int = 0
    max_length: int = 500


def _specs() -> list[KeySpec]:
    measurands = {"kind": "csl", "max_items": MEASURAND_LIST_MAX, "allowed_items": SUPPORTED_MEASURANDS}
    return [
        KeySpec("AllowOfflineTxForUnknownId", "bool"),
        KeySpec("AuthorizationCacheEnabled", "bool"),
        KeySpec("AuthorizeRemoteTxRequests", "bool"),
        KeySpec("ClockAlignedDataInterval", "int", minimum=0, maximum=86400),
        KeySpec("ConnectionTimeOut", "int", minimum=1, maximum=3600),
        KeySpec("ConnectorPhaseRotation", "csl", max_items=65),
        KeySpec("ConnectorPhaseRotationMaxLength", "int", readonly=True),
        KeySpec("GetConfigurationMaxKeys", "int", readonly=True),
        KeySpec("HeartbeatInterval", "int", minimum=0, maximum=86400),
        KeySpec("LocalAuthorizeOffline", "bool"),
        KeySpec("LocalPreAuthorize", "bool"),
        KeySpec("MeterValuesAlignedData", **measurands),
        KeySpec("MeterValuesAlignedDataMaxLength", "int", readonly=True),
        KeySpec("MeterValuesSampledData", **measurands),
        KeySpec("MeterValuesSampledDataMaxLength", "int", readonly=True),
        KeySpec("MeterValueSampleInterval", "int", minimum=0, maximum=86400),
        KeySpec("NumberOfConnectors", "int", readonly=True),
        KeySpec("ResetRetries", "int", minimum=0, maximum=10),
        KeySpec("StopTransactionOnEVSideDisconnect", "bool"),
        KeySpec("StopTransactionOnInvalidId", "bool"),
        KeySpec("StopTxnAlignedData", **measurands),
        KeySpec("StopTxnAlignedDataMaxLength", "int", readonly=True),
        KeySpec("StopTxnSampledData", **measurands),
        KeySpec("StopTxnSampledDataMaxLength", "int", readonly=True),
        KeySpec("SupportedFeatureProfiles", "csl", readonly=True),
        KeySpec("TransactionMessageAttempts", "int", minimum=1, maximum=10),
        KeySpec("TransactionMessageRetryInterval", "int", minimum=0, maximum=3600),
        KeySpec("UnlockConnectorOnEVSideDisconnect", "bool"),
        KeySpec("WebSocketPingInterval", "int", minimum=0, maximum=3600),
        KeySpec("LocalAuthListEnabled", "bool"),
        KeySpec("LocalAuthListMaxLength", "int", readonly=True),
        KeySpec("SendLocalListMaxLength", "int", readonly=True),
        KeySpec("ReserveConnectorZeroSupported", "bool", readonly=True),
        KeySpec("ChargeProfileMaxStackLevel", "int", readonly=True),
        KeySpec("ChargingScheduleAllowedChargingRateUnit", "csl", readonly=True),
        KeySpec("ChargingScheduleMaxPeriods", "int", readonly=True),
        KeySpec("MaxChargingProfilesInstalled", "int", readonly=True),
        # Security whitepaper: the Basic-auth password, write-only, 16 to 40 printable characters.
        KeySpec("AuthorizationKey", "str", write_only=True, min_length=16, max_length=40),
        KeySpec("SecurityProfile", "int", readonly=True),
    ]


SPECS: dict[str, KeySpec] = {spec.name: spec for spec in _specs()}


def default_values(
    *, connectors: int, heartbeat_interval_s: int, meter_interval_s: int, authorization_key: str | None
) -> dict[str, str]:
    """A freshly installed charger's configuration."""
    return {
        "AllowOfflineTxForUnknownId": "false",
        "AuthorizationCacheEnabled": "true",
        "AuthorizeRemoteTxRequests": "false",
        "ClockAlignedDataInterval": "0",
        "ConnectionTimeOut": "60",
        "ConnectorPhaseRotation": ",".join(f"{n}.RST" for n in range(1, connectors + 1)),
        "ConnectorPhaseRotationMaxLength": str(connectors + 1),
        "GetConfigurationMaxKeys": str(len(SPECS)),
        "HeartbeatInterval": str(heartbeat_interval_s),
        "LocalAuthorizeOffline": "true",
        "LocalPreAuthorize": "false",
        "MeterValuesAlignedData": "Energy.Active.Import.Register",
        "MeterValuesAlignedDataMaxLength": str(MEASURAND_LIST_MAX),
        "MeterValuesSampledData": "Energy.Active.Import.Register,Power.Active.Import,Current.Import",
        "MeterValuesSampledDataMaxLength": str(MEASURAND_LIST_MAX),
        "MeterValueSampleInterval": str(meter_interval_s),
        "NumberOfConnectors": str(connectors),
        "ResetRetries": "1",
        "StopTransactionOnEVSideDisconnect": "true",
        "StopTransactionOnInvalidId": "true",
        "StopTxnAlignedData": "",
        "StopTxnAlignedDataMaxLength": str(MEASURAND_LIST_MAX),
        "StopTxnSampledData": "Energy.Active.Import.Register",
        "StopTxnSampledDataMaxLength": str(MEASURAND_LIST_MAX),
        "SupportedFeatureProfiles": FEATURE_PROFILES,
        "TransactionMessageAttempts": "3",
        "TransactionMessageRetryInterval": "10",
        "UnlockConnectorOnEVSideDisconnect": "true",
        "WebSocketPingInterval": "0",
        "LocalAuthListEnabled": "true",
        "LocalAuthListMaxLength": "1000",
        "SendLocalListMaxLength": "500",
        "ReserveConnectorZeroSupported": "false",
        "ChargeProfileMaxStackLevel": "8",
        "ChargingScheduleAllowedChargingRateUnit": "Current,Power",
        "ChargingScheduleMaxPeriods": "24",
        "MaxChargingProfilesInstalled": "16",
        "AuthorizationKey": authorization_key or "",
        "SecurityProfile": "1" if authorization_key else "0",
    }


class ConfigurationStore:
    """The configuration of one simulated charger; survives its reboots (it lives with the charger)."""

    def __init__(self, values: dict[str, str]) -> None:
        self._values = dict(values)

    def get(self, name: str) -> str:
        return self._values.get(name, "")

    def integer(self, name: str) -> int:
        try:
            return int(self._values.get(name, "0"))
        except ValueError:
            return 0

    def boolean(self, name: str) -> bool:
        return self._values.get(name, "").lower() == "true"

    def items(self, name: str) -> list[str]:
        return [item.strip() for item in self._values.get(name, "").split(",") if item.strip()]

    def set(self, name: str, value: str) -> None:
        """Set a value the charger itself decided (e.g. HeartbeatInterval from BootNotification)."""
        self._values[name] = value

    def change(self, key: str, value: str) -> str:
        """Apply a ChangeConfiguration; returns Accepted, Rejected or NotSupported."""
        spec = SPECS.get(key)
        if spec is None or key not in self._values:
            return "NotSupported"
        if spec.readonly:
            return "Rejected"
        normalised = normalise(spec, value)
        if normalised is None:
            return "Rejected"
        self._values[key] = normalised
        return "Accepted"

    def report(self, keys: list[str] | None) -> tuple[list[dict[str, Any]], list[str]]:
        """GetConfiguration: (configuration_key entries, unknown keys). No keys means all of them."""
        names = keys if keys else list(self._values)
        known: list[dict[str, Any]] = []
        unknown: list[str] = []
        for name in names:
            spec = SPECS.get(name)
            if spec is None or name not in self._values:
                unknown.append(name[:50])
                continue
            entry: dict[str, Any] = {"key": name, "readonly": spec.readonly}
            if not spec.write_only:
                entry["value"] = self._values[name][:500]
            known.append(entry)
        return known, unknown


def normalise(spec: KeySpec, value: str) -> str | None:
    """The value in canonical form, or None when it does not fit the key."""
    text = value.strip()
    if spec.kind == "bool":
        return text.lower() if text.lower() in ("true", "false") else None
    if spec.kind == "int":
        try:
            number = int(text)
        except ValueError:
            return None
        if (spec.minimum is not None and number < spec.minimum) or (
            spec.maximum is not None and number > spec.maximum
        ):
            return None
        return str(number)
    if spec.kind == "csl":
        items = [item.strip() for item in text.split(",") if item.strip()]
        if spec.max_items is not None and len(items) > spec.max_items:
            return None
        if spec.allowed_items is not None and any(item not in spec.allowed_items for item in items):
            return None
        return ",".join(items)
    if not spec.min_length <= len(text) <= spec.max_length or any(not "!" <= ch <= "~" for ch in text):
        return None
    return text
