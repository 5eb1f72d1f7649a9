"""The simulated charging station's OCPP 2.0.1 device model: components and variables over the same
configuration store the 1.6 charger uses (pure, no I/O).

Most variables are the 2.0.1 names of a 1.6 configuration key (OCPPCommCtrlr.HeartbeatInterval is
HeartbeatInterval, SecurityCtrlr.BasicAuthPassword is AuthorizationKey, ...), so the charger's
behaviour reads one value whichever protocol set it; variables 1.6 does not have are kept in the same
store under their own names. Only the Actual attribute exists. `get` / `set` answer GetVariables /
SetVariables item by item; `report` gives the NotifyReport reportData of a base report.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from tools.simulator.configuration import (
    MEASURAND_LIST_MAX,
    SPECS,
    SUPPORTED_MEASURANDS,
    ConfigurationStore,
    KeySpec,
    normalise,
)

ACTUAL = "Actual"
DATA_TYPES = {"bool": "boolean", "int": "integer", "csl": "MemberList", "str": "string"}


@dataclass(frozen=True, slots=True)
class Variable:
    """One variable of the device model: where its value lives (`key` in the configuration store) and
    what values it takes (`spec`, a 1.6 key's own or one of its own)."""

    component: str
    name: str
    key: str
    spec: KeySpec
    instance: str = ""
    data_type: str = ""

    @property
    def mutability(self) -> str:
        if self.spec.write_only:
            return "WriteOnly"
        return "ReadOnly" if self.spec.readonly else "ReadWrite"

    @property
    def ident(self) -> tuple[str, str, str]:
        """Names compare case-insensitively (OCPP 2.0.1 part 2, 1.2)."""
        return self.component.casefold(), self.name.casefold(), self.instance.casefold()


def _mapped(component: str, name: str, key: str, *, instance: str = "") -> Variable:
    spec = SPECS[key]
    return Variable(component, name, key, spec, instance, DATA_TYPES[spec.kind])


def _own(component: str, name: str, spec: KeySpec, *, instance: str = "", data_type: str = "") -> Variable:
    key = f"{component}.{name}" + (f".{instance}" if instance else "")
    return Variable(component, name, key, spec, instance, data_type or DATA_TYPES[spec.kind])


_MEASURANDS = {"max_items": MEASURAND_LIST_MAX, "allowed_items": SUPPORTED_MEASURANDS}
VARIABLES: tuple[Variable, ...] = (
    _mapped("OCPPCommCtrlr", "HeartbeatInterval", "HeartbeatInterval"),
    _own("OCPPCommCtrlr", "OfflineThreshold", KeySpec("OfflineThreshold", "int", minimum=0, maximum=86400)),
    _own(
        "OCPPCommCtrlr",
        "MessageTimeout",
        KeySpec("MessageTimeout", "int", minimum=1, maximum=3600),
        instance="Default",
    ),
    _mapped("OCPPCommCtrlr", "MessageAttempts", "TransactionMessageAttempts", instance="TransactionEvent"),
    _mapped(
        "OCPPCommCtrlr",
        "MessageAttemptInterval",
        "TransactionMessageRetryInterval",
        instance="TransactionEvent",
    ),
    _own(
        "OCPPCommCtrlr",
        "NetworkConfigurationPriority",
        KeySpec("NetworkConfigurationPriority", "csl", max_items=8),
        data_type="SequenceList",
    ),
    _own(
        "OCPPCommCtrlr",
        "NetworkProfileConnectionAttempts",
        KeySpec("NetworkProfileConnectionAttempts", "int", minimum=1, maximum=100),
    ),
    _mapped("OCPPCommCtrlr", "ResetRetries", "ResetRetries"),
    _mapped("OCPPCommCtrlr", "UnlockOnEVSideDisconnect", "UnlockConnectorOnEVSideDisconnect"),
    _mapped("OCPPCommCtrlr", "WebSocketPingInterval", "WebSocketPingInterval"),
    _own("OCPPCommCtrlr", "FileTransferProtocols", KeySpec("FileTransferProtocols", "csl", readonly=True)),
    _own("AuthCtrlr", "AuthEnabled", KeySpec("AuthEnabled", "bool")),
    _mapped("AuthCtrlr", "AuthorizeRemoteStart", "AuthorizeRemoteTxRequests"),
    _mapped("AuthCtrlr", "LocalAuthorizeOffline", "LocalAuthorizeOffline"),
    _mapped("AuthCtrlr", "LocalPreAuthorize", "LocalPreAuthorize"),
    _mapped("AuthCtrlr", "OfflineTxForUnknownIdEnabled", "AllowOfflineTxForUnknownId"),
    _mapped("AuthCacheCtrlr", "Enabled", "AuthorizationCacheEnabled"),
    _mapped("LocalAuthListCtrlr", "Enabled", "LocalAuthListEnabled"),
    _mapped("LocalAuthListCtrlr", "ItemsPerMessage", "SendLocalListMaxLength"),
    _mapped("LocalAuthListCtrlr", "Storage", "LocalAuthListMaxLength"),
    _mapped("TxCtrlr", "EVConnectionTimeOut", "ConnectionTimeOut"),
    _mapped("TxCtrlr", "StopTxOnEVSideDisconnect", "StopTransactionOnEVSideDisconnect"),
    _mapped("TxCtrlr", "StopTxOnInvalidId", "StopTransactionOnInvalidId"),
    _own("TxCtrlr", "TxStartPoint", KeySpec("TxStartPoint", "csl", readonly=True)),
    _own("TxCtrlr", "TxStopPoint", KeySpec("TxStopPoint", "csl", readonly=True)),
    _mapped("SampledDataCtrlr", "TxUpdatedInterval", "MeterValueSampleInterval"),
    _mapped("SampledDataCtrlr", "TxUpdatedMeasurands", "MeterValuesSampledData"),
    _mapped("SampledDataCtrlr", "TxEndedMeasurands", "StopTxnSampledData"),
    _own("SampledDataCtrlr", "TxStartedMeasurands", KeySpec("TxStartedMeasurands", "csl", **_MEASURANDS)),
    _mapped("AlignedDataCtrlr", "Interval", "ClockAlignedDataInterval"),
    _mapped("AlignedDataCtrlr", "Measurands", "MeterValuesAlignedData"),
    _mapped("AlignedDataCtrlr", "TxEndedMeasurands", "StopTxnAlignedData"),
    _mapped("SecurityCtrlr", "BasicAuthPassword", "AuthorizationKey"),
    _mapped("SecurityCtrlr", "SecurityProfile", "SecurityProfile"),
    _own(
        "SecurityCtrlr", "OrganizationName", KeySpec("OrganizationName", "str", readonly=True, max_length=50)
    ),
    _own("SmartChargingCtrlr", "Enabled", KeySpec("SmartChargingEnabled", "bool", readonly=True)),
    _mapped("SmartChargingCtrlr", "ProfileStackLevel", "ChargeProfileMaxStackLevel"),
    _mapped("SmartChargingCtrlr", "PeriodsPerSchedule", "ChargingScheduleMaxPeriods"),
    _mapped("SmartChargingCtrlr", "Entries", "MaxChargingProfilesInstalled"),
    _own("SmartChargingCtrlr", "RateUnit", KeySpec("RateUnit", "csl", readonly=True)),
    _own("ReservationCtrlr", "Enabled", KeySpec("ReservationEnabled", "bool", readonly=True)),
    _own("ReservationCtrlr", "NonEvseSpecific", KeySpec("ReservationNonEvseSpecific", "bool", readonly=True)),
    _own(
        "DeviceDataCtrlr",
        "ItemsPerMessage",
        KeySpec("ItemsPerMessageGetVariables", "int", readonly=True),
        instance="GetVariables",
    ),
    _own(
        "DeviceDataCtrlr",
        "ItemsPerMessage",
        KeySpec("ItemsPerMessageSetVariables", "int", readonly=True),
        instance="SetVariables",
    ),
    _own(
        "DeviceDataCtrlr",
        "ItemsPerMessage",
        KeySpec("ItemsPerMessageGetReport", "int", readonly=True),
        instance="GetReport",
    ),
)
_BY_IDENT = {variable.ident: variable for variable in VARIABLES}
_COMPONENTS = {variable.component.casefold() for variable in VARIABLES}


def own_defaults(*, organization: str) -> dict[str, str]:
    """The values of the variables that have no 1.6 key, for a freshly installed station."""
    values = {
        "OfflineThreshold": "60",
        "MessageTimeout": "30",
        "NetworkConfigurationPriority": "1",
        "NetworkProfileConnectionAttempts": "3",
        "FileTransferProtocols": "HTTP,HTTPS",
        "AuthEnabled": "true",
        "TxStartPoint": "Authorized",
        "TxStopPoint": "EVConnected,Authorized",
        "TxStartedMeasurands": "Energy.Active.Import.Register",
        "OrganizationName": organization[:50],
        "SmartChargingEnabled": "true",
        "RateUnit": "A,W",
        "ReservationEnabled": "true",
        "ReservationNonEvseSpecific": "true",
        "ItemsPerMessageGetVariables": "20",
        "ItemsPerMessageSetVariables": "20",
        "ItemsPerMessageGetReport": "50",
    }
    return {variable.key: values[variable.spec.name] for variable in VARIABLES if variable.key not in SPECS}


def _names(item: dict[str, Any]) -> tuple[str, str, str]:
    component, variable = item.get("component") or {}, item.get("variable") or {}
    return (
        str(component.get("name", "")).casefold(),
        str(variable.get("name", "")).casefold(),
        str(variable.get("instance") or "").casefold(),
    )


class DeviceModel:
    """The device model view of a charger's configuration store."""

    def __init__(self, config: ConfigurationStore) -> None:
        self.config = config

    def find(self, item: dict[str, Any]) -> tuple[str, Variable | None]:
        """The variable a GetVariableData / SetVariableData item (snake_case) names, with the status to
        answer when there is none (UnknownComponent, UnknownVariable or NotSupportedAttributeType)."""
        ident = _names(item)
        variable = _BY_IDENT.get(ident)
        if variable is None:
            return ("UnknownVariable" if ident[0] in _COMPONENTS else "UnknownComponent"), None
        if (item.get("attribute_type") or ACTUAL) != ACTUAL:
            return "NotSupportedAttributeType", None
        return "Accepted", variable

    def value(self, variable: Variable) -> str:
        return self.config.get(variable.key)

    def get(self, item: dict[str, Any]) -> dict[str, Any]:
        """A GetVariableResult for one GetVariableData item; a WriteOnly variable is Rejected."""
        status, variable = self.find(item)
        result: dict[str, Any] = {
            "attribute_status": status,
            "component": item["component"],
            "variable": item["variable"],
        }
        if item.get("attribute_type"):
            result["attribute_type"] = item["attribute_type"]
        if variable is not None:
            if variable.spec.write_only:
                result["attribute_status"] = "Rejected"
            else:
                result["attribute_value"] = self.value(variable)[:2500]
        return result

    def set(self, item: dict[str, Any]) -> tuple[dict[str, Any], Variable | None]:
        """A SetVariableResult for one SetVariableData item, and the variable when it changed: ReadOnly
        variables and values that do not fit are Rejected."""
        status, variable = self.find(item)
        if variable is not None:
            value = normalise(variable.spec, str(item.get("attribute_value", "")))
            if variable.spec.readonly or value is None:
                status, variable = "Rejected", None
            else:
                self.config.set(variable.key, value)
        result: dict[str, Any] = {
            "attribute_status": status,
            "component": item["component"],
            "variable": item["variable"],
        }
        if item.get("attribute_type"):
            result["attribute_type"] = item["attribute_type"]
        return result, variable

    def report(self, report_base: str) -> list[dict[str, Any]]:
        """NotifyReport reportData (snake_case) for a base report: ConfigurationInventory is what can be
        set, FullInventory everything."""
        data = []
        for variable in VARIABLES:
            if report_base == "ConfigurationInventory" and variable.spec.readonly:
                continue
            attribute: dict[str, Any] = {
                "type": ACTUAL,
                "mutability": variable.mutability,
                "persistent": True,
                "constant": False,
            }
            if not variable.spec.write_only:
                attribute["value"] = self.value(variable)[:2500]
            name: dict[str, Any] = {"name": variable.name}
            if variable.instance:
                name["instance"] = variable.instance
            data.append(
                {
                    "component": {"name": variable.component},
                    "variable": name,
                    "variable_attribute": [attribute],
                    "variable_characteristics": {
                        "data_type": variable.data_type,
                        "supports_monitoring": False,
                    },
                }
            )
        return data
