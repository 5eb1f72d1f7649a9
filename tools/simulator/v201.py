"""A simulated OCPP 2.0.1 charging station: the 2.0.1 messages of the shared behaviour (`base.py`), its
transaction flow and device model, and the answers to every CSMS→station command.

Each EVSE has one connector (EVSE n is the charger's connector n, connectorId 1). A transaction is
reported by TransactionEvent messages the station numbers itself (seqNo from 0, a transactionId it
generates): Started when an authorised driver plugs in (TxStartPoint Authorized), Updated with the
periodic meter values, Ended when it stops. They wait in the ordered queue across disconnects and
carry `offline` when they were made without a connection. The device model (`devicemodel.py`) is the
2.0.1 view of the same configuration store the 1.6 charger uses.
"""

from __future__ import annotations

import asyncio
import logging
import uuid
from datetime import datetime
from typing import Any

from ocpp.routing import on
from ocpp.v201 import ChargePoint, call, call_result
from ocpp.v201.enums import Action

from tools.simulator import clock
from tools.simulator.base import ChargerOptions, SimulatedCharger, SimulatedConnection, soon
from tools.simulator.clock import iso
from tools.simulator.devicemodel import DeviceModel, own_defaults
from tools.simulator.smartcharging import CHARGE_POINT_MAX, TX, TX_DEFAULT, Profile
from tools.simulator.state import Connector, Outgoing, Reservation, Transaction

logger = logging.getLogger(__name__)
SUBPROTOCOL = "ocpp2.0.1"
RFID_TYPE = "ISO14443"
# stoppedReason → the triggerReason of the Ended event it causes.
STOP_TRIGGERS = {
    "Local": "StopAuthorized",
    "Remote": "RemoteStop",
    "DeAuthorized": "Deauthorized",
    "ImmediateReset": "ResetCommand",
    "EVDisconnected": "EVCommunicationLost",
    "Timeout": "EVConnectTimeout",
}
TX_STARTED_MEASURANDS = "SampledDataCtrlr.TxStartedMeasurands"
FIRMWARE_STATUSES = frozenset(
    {
        "Idle",
        "DownloadScheduled",
        "Downloading",
        "Downloaded",
        "DownloadFailed",
        "SignatureVerified",
        "InstallScheduled",
        "Installing",
        "InstallRebooting",
        "Installed",
        "InstallationFailed",
        "InstallVerificationFailed",
        "InvalidSignature",
    }
)
FINAL_FIRMWARE_STATUSES = frozenset(
    {"Installed", "DownloadFailed", "InstallationFailed", "InstallVerificationFailed", "InvalidSignature"}
)
# 2.0.1 chargingProfilePurpose → the simulator's smart charging purposes (ChargingStationExternalConstraints
# are set by the station's own energy manager, never by the CSMS).
PURPOSES = {"ChargingStationMaxProfile": CHARGE_POINT_MAX, "TxDefaultProfile": TX_DEFAULT, "TxProfile": TX}
RATE_UNITS = {"A": "A", "W": "W"}
TRIGGERABLE = frozenset(
    {
        "BootNotification",
        "Heartbeat",
        "StatusNotification",
        "MeterValues",
        "TransactionEvent",
        "FirmwareStatusNotification",
        "LogStatusNotification",
    }
)
REPORT_BASES = frozenset({"ConfigurationInventory", "FullInventory"})


def id_token(tag: str) -> dict[str, str]:
    """The 2.0.1 idToken of one of the simulator's RFID tags."""
    return {"id_token": tag, "type": RFID_TYPE}


def sampled_values(values: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The meter's 1.6-shaped sampled values as 2.0.1 SampledValueType (a number, unitOfMeasure)."""
    out = []
    for value in values:
        item = {key: value[key] for key in ("context", "measurand", "location", "phase") if key in value}
        item["value"] = float(value["value"])
        item["unit_of_measure"] = {"unit": value["unit"]}
        out.append(item)
    return out


def profile_from_v201(data: dict[str, Any], *, evse_id: int) -> Profile:
    """A 2.0.1 ChargingProfileType (snake_case) as the simulator's profile; its first schedule applies.
    ValueError (or KeyError) when it cannot be executed."""
    purpose = PURPOSES.get(data["charging_profile_purpose"])
    if purpose is None:
        raise ValueError(f"purpose {data['charging_profile_purpose']} is not set by a CSMS")
    schedule = data["charging_schedule"][0]
    return Profile.from_payload(
        {
            "charging_profile_id": data["id"],
            "stack_level": data["stack_level"],
            "charging_profile_purpose": purpose,
            "charging_profile_kind": data["charging_profile_kind"],
            "recurrency_kind": data.get("recurrency_kind"),
            "valid_from": data.get("valid_from"),
            "valid_to": data.get("valid_to"),
            "transaction_id": data.get("transaction_id"),
            "charging_schedule": {
                "charging_rate_unit": RATE_UNITS[schedule["charging_rate_unit"]],
                "charging_schedule_period": schedule["charging_schedule_period"],
                "start_schedule": schedule.get("start_schedule"),
                "duration": schedule.get("duration"),
            },
        },
        connector_id=evse_id,
    )


class SimulatedChargingStation(SimulatedConnection, ChargePoint):
    """The `ocpp` library's 2.0.1 ChargePoint bound to a simulated station (`self.station`): every
    CSMS→station command, answered from the station's state the way a station answers it."""

    station: ChargingStation

    # --- transactions ------------------------------------------------------------------------------
    @on(Action.request_start_transaction)
    async def on_request_start_transaction(
        self,
        id_token: dict[str, Any],
        remote_start_id: int,
        call_unique_id: str,
        evse_id: int | None = None,
        charging_profile: dict[str, Any] | None = None,
        **kwargs: Any,
    ) -> call_result.RequestStartTransaction:
        rejected = call_result.RequestStartTransaction(status="Rejected")
        tag = id_token["id_token"]
        chosen = evse_id if evse_id is not None else self.station.first_free_connector(tag)
        profile = None
        if charging_profile is not None and chosen is not None:
            try:
                profile = profile_from_v201(charging_profile, evse_id=chosen)
            except (KeyError, ValueError, IndexError):
                return self._answer(call_unique_id, rejected)
            if profile.purpose != TX:
                return self._answer(call_unique_id, rejected)
        accepted, followup = self._remote_start(
            requested=chosen, tag=tag, profile=profile, remote_start_id=remote_start_id
        )
        if not accepted:
            return self._answer(call_unique_id, rejected)
        return self._answer(call_unique_id, call_result.RequestStartTransaction(status="Accepted"), followup)

    @on(Action.request_stop_transaction)
    async def on_request_stop_transaction(
        self, transaction_id: str, call_unique_id: str, **kwargs: Any
    ) -> call_result.RequestStopTransaction:
        followup = self._remote_stop(transaction_id)
        status = "Accepted" if followup is not None else "Rejected"
        return self._answer(call_unique_id, call_result.RequestStopTransaction(status=status), followup)

    @on(Action.get_transaction_status)
    async def on_get_transaction_status(
        self, call_unique_id: str, transaction_id: str | None = None, **kwargs: Any
    ) -> call_result.GetTransactionStatus:
        station = self.station
        queued = station.queued_events(transaction_id) > 0
        if transaction_id is None:
            return self._answer(call_unique_id, call_result.GetTransactionStatus(messages_in_queue=queued))
        ongoing = station.connector_with_transaction(transaction_id) is not None
        return self._answer(
            call_unique_id,
            call_result.GetTransactionStatus(messages_in_queue=queued, ongoing_indicator=ongoing),
        )

    @on(Action.unlock_connector)
    async def on_unlock_connector(
        self, evse_id: int, connector_id: int, call_unique_id: str, **kwargs: Any
    ) -> call_result.UnlockConnector:
        connector = self.station.connectors.get(evse_id)
        if connector is None or connector_id != 1:
            return self._answer(call_unique_id, call_result.UnlockConnector(status="UnknownConnector"))
        if connector.transaction is not None:
            # F05.FR.02: an authorised transaction keeps its cable; RequestStopTransaction ends it first.
            return self._answer(
                call_unique_id, call_result.UnlockConnector(status="OngoingAuthorizedTransaction")
            )
        return self._answer(call_unique_id, call_result.UnlockConnector(status="Unlocked"))

    @on(Action.cost_updated)
    async def on_cost_updated(
        self, total_cost: float, transaction_id: str, call_unique_id: str, **kwargs: Any
    ) -> call_result.CostUpdated:
        self.station.costs[transaction_id] = float(total_cost)
        return self._answer(call_unique_id, call_result.CostUpdated())

    # --- the station as a whole --------------------------------------------------------------------
    @on(Action.reset)
    async def on_reset(
        self, type: str, call_unique_id: str, evse_id: int | None = None, **kwargs: Any
    ) -> call_result.Reset:
        if evse_id is not None and not self._valid_connector(evse_id):
            return self._answer(call_unique_id, call_result.Reset(status="Rejected"))
        return self._answer(
            call_unique_id, call_result.Reset(status=self.station.request_reset(type, evse_id))
        )

    @on(Action.change_availability)
    async def on_change_availability(
        self, operational_status: str, call_unique_id: str, evse: dict[str, Any] | None = None, **kwargs: Any
    ) -> call_result.ChangeAvailability:
        evse_id = (evse or {}).get("id", 0)
        if not self._valid_connector(evse_id, allow_zero=True) or (evse or {}).get("connector_id", 1) != 1:
            return self._answer(call_unique_id, call_result.ChangeAvailability(status="Rejected"))
        status = self.station.change_availability(evse_id, operative=operational_status == "Operative")
        return self._answer(
            call_unique_id, call_result.ChangeAvailability(status=status), soon(self.station.refresh_statuses)
        )

    @on(Action.get_variables)
    async def on_get_variables(
        self, get_variable_data: list[dict[str, Any]], call_unique_id: str, **kwargs: Any
    ) -> call_result.GetVariables:
        model = self.station.device_model
        return self._answer(
            call_unique_id,
            call_result.GetVariables(get_variable_result=[model.get(i) for i in get_variable_data]),
        )

    @on(Action.set_variables)
    async def on_set_variables(
        self, set_variable_data: list[dict[str, Any]], call_unique_id: str, **kwargs: Any
    ) -> call_result.SetVariables:
        results, changed = [], []
        for item in set_variable_data:
            result, variable = self.station.device_model.set(item)
            results.append(result)
            if variable is not None:
                changed.append(variable.key)
        followup = soon(lambda: self.station.configuration_changed(changed)) if changed else None
        return self._answer(call_unique_id, call_result.SetVariables(set_variable_result=results), followup)

    @on(Action.get_base_report)
    async def on_get_base_report(
        self, request_id: int, report_base: str, call_unique_id: str, **kwargs: Any
    ) -> call_result.GetBaseReport:
        if report_base not in REPORT_BASES:
            return self._answer(call_unique_id, call_result.GetBaseReport(status="NotSupported"))
        return self._answer(
            call_unique_id,
            call_result.GetBaseReport(status="Accepted"),
            lambda: self.station.notify_report(request_id, report_base),
        )

    @on(Action.set_network_profile)
    async def on_set_network_profile(
        self, configuration_slot: int, connection_data: dict[str, Any], call_unique_id: str, **kwargs: Any
    ) -> call_result.SetNetworkProfile:
        # The simulator keeps its one connection; it accepts a profile for any slot but the one in use.
        status = "Accepted" if configuration_slot != 1 else "Rejected"
        return self._answer(call_unique_id, call_result.SetNetworkProfile(status=status))

    @on(Action.clear_cache)
    async def on_clear_cache(self, call_unique_id: str, **kwargs: Any) -> call_result.ClearCache:
        return self._answer(call_unique_id, call_result.ClearCache(status=self.station.clear_cache()))

    @on(Action.data_transfer)
    async def on_data_transfer(
        self,
        vendor_id: str,
        call_unique_id: str,
        message_id: str | None = None,
        data: Any = None,
        **kwargs: Any,
    ) -> call_result.DataTransfer:
        status = self._data_transfer_status(vendor_id, message_id)
        echo = data if status == "Accepted" else None
        return self._answer(call_unique_id, call_result.DataTransfer(status=status, data=echo))

    @on(Action.trigger_message)
    async def on_trigger_message(
        self, requested_message: str, call_unique_id: str, evse: dict[str, Any] | None = None, **kwargs: Any
    ) -> call_result.TriggerMessage:
        if requested_message not in TRIGGERABLE:
            return self._answer(call_unique_id, call_result.TriggerMessage(status="NotImplemented"))
        evse_id = (evse or {}).get("id")
        if evse_id is not None and not self._valid_connector(evse_id):
            return self._answer(call_unique_id, call_result.TriggerMessage(status="Rejected"))
        if requested_message == "TransactionEvent" and not any(
            c.transaction for c in self.station.connectors.values() if evse_id in (None, c.connector_id)
        ):
            return self._answer(call_unique_id, call_result.TriggerMessage(status="Rejected"))
        return self._answer(
            call_unique_id,
            call_result.TriggerMessage(status="Accepted"),
            lambda: self.station.send_triggered(requested_message, evse_id),
        )

    # --- firmware and logs -------------------------------------------------------------------------
    @on(Action.update_firmware)
    async def on_update_firmware(
        self,
        request_id: int,
        firmware: dict[str, Any],
        call_unique_id: str,
        retries: int | None = None,
        retry_interval: int | None = None,
        **kwargs: Any,
    ) -> call_result.UpdateFirmware:
        install = firmware.get("install_date_time")
        status = self.station.request_firmware_update(
            request_id=request_id,
            location=firmware["location"],
            retrieve_at=clock.parse_iso8601(firmware["retrieve_date_time"]),
            install_at=clock.parse_iso8601(install) if install else None,
            signature=firmware.get("signature"),
            retries=retries or 0,
            retry_interval_s=retry_interval or 0,
        )
        return self._answer(call_unique_id, call_result.UpdateFirmware(status=status))

    @on(Action.get_log)
    async def on_get_log(
        self,
        log: dict[str, Any],
        log_type: str,
        request_id: int,
        call_unique_id: str,
        retries: int | None = None,
        retry_interval: int | None = None,
        **kwargs: Any,
    ) -> call_result.GetLog:
        file_name = f"{self.station.identity}-{log_type}-{clock.now():%Y%m%dT%H%M%SZ}.log"[:255]
        return self._answer(
            call_unique_id,
            call_result.GetLog(status="Accepted", filename=file_name),
            lambda: self.station.upload_log(
                request_id=request_id,
                location=log["remote_location"],
                file_name=file_name,
                retries=retries or 0,
                retry_interval_s=retry_interval or 0,
            ),
        )

    # --- reservations ------------------------------------------------------------------------------
    @on(Action.reserve_now)
    async def on_reserve_now(
        self,
        id: int,
        expiry_date_time: str,
        id_token: dict[str, Any],
        call_unique_id: str,
        evse_id: int | None = None,
        group_id_token: dict[str, Any] | None = None,
        **kwargs: Any,
    ) -> call_result.ReserveNow:
        station = self.station
        tag = id_token["id_token"]
        if evse_id is None:
            # Any EVSE (ReservationCtrlr.NonEvseSpecific): one idle EVSE is kept free for the token.
            if not station.config.boolean("ReservationCtrlr.NonEvseSpecific"):
                return self._answer(call_unique_id, call_result.ReserveNow(status="Rejected"))
        elif not self._valid_connector(evse_id):
            return self._answer(call_unique_id, call_result.ReserveNow(status="Rejected"))
        status = station.reserve(
            reservation_id=id,
            connector_id=evse_id or 0,
            id_tag=tag,
            parent_id_tag=(group_id_token or {}).get("id_token"),
            expires_at=clock.parse_iso8601(expiry_date_time),
        )
        return self._answer(
            call_unique_id, call_result.ReserveNow(status=status), soon(station.refresh_statuses)
        )

    @on(Action.cancel_reservation)
    async def on_cancel_reservation(
        self, reservation_id: int, call_unique_id: str, **kwargs: Any
    ) -> call_result.CancelReservation:
        if not self.station.cancel_reservation(reservation_id):
            return self._answer(call_unique_id, call_result.CancelReservation(status="Rejected"))
        return self._answer(
            call_unique_id,
            call_result.CancelReservation(status="Accepted"),
            soon(self.station.refresh_statuses),
        )

    # --- local authorisation list ------------------------------------------------------------------
    @on(Action.send_local_list)
    async def on_send_local_list(
        self,
        version_number: int,
        update_type: str,
        call_unique_id: str,
        local_authorization_list: list[dict[str, Any]] | None = None,
        **kwargs: Any,
    ) -> call_result.SendLocalList:
        config = self.station.config
        entries = local_authorization_list or []
        if not config.boolean("LocalAuthListEnabled") or len(entries) > config.integer(
            "SendLocalListMaxLength"
        ):
            status = "Failed"
        else:
            status = self.station.apply_local_list(
                version=version_number,
                update_type=update_type,
                entries=[(entry["id_token"]["id_token"], entry.get("id_token_info")) for entry in entries],
            )
        return self._answer(call_unique_id, call_result.SendLocalList(status=status))

    @on(Action.get_local_list_version)
    async def on_get_local_list_version(
        self, call_unique_id: str, **kwargs: Any
    ) -> call_result.GetLocalListVersion:
        return self._answer(
            call_unique_id,
            call_result.GetLocalListVersion(version_number=self.station.local_list_version()),
        )

    # --- smart charging ----------------------------------------------------------------------------
    @on(Action.set_charging_profile)
    async def on_set_charging_profile(
        self, evse_id: int, charging_profile: dict[str, Any], call_unique_id: str, **kwargs: Any
    ) -> call_result.SetChargingProfile:
        station = self.station
        rejected = call_result.SetChargingProfile(status="Rejected")
        if not self._valid_connector(evse_id, allow_zero=True):
            return self._answer(call_unique_id, rejected)
        try:
            profile = profile_from_v201(charging_profile, evse_id=evse_id)
        except (KeyError, ValueError, IndexError):
            return self._answer(call_unique_id, rejected)
        if not station.install_profile(
            profile, rate_units=station.config.items("SmartChargingCtrlr.RateUnit")
        ):
            return self._answer(call_unique_id, rejected)
        return self._answer(
            call_unique_id, call_result.SetChargingProfile(status="Accepted"), soon(station.profiles_changed)
        )

    @on(Action.clear_charging_profile)
    async def on_clear_charging_profile(
        self,
        call_unique_id: str,
        charging_profile_id: int | None = None,
        charging_profile_criteria: dict[str, Any] | None = None,
        **kwargs: Any,
    ) -> call_result.ClearChargingProfile:
        criteria = charging_profile_criteria or {}
        purpose = criteria.get("charging_profile_purpose")
        removed = self.station.profiles.clear(
            profile_id=charging_profile_id,
            connector_id=criteria.get("evse_id"),
            purpose=PURPOSES.get(purpose, purpose) if purpose else None,
            stack_level=criteria.get("stack_level"),
        )
        if not removed:
            return self._answer(call_unique_id, call_result.ClearChargingProfile(status="Unknown"))
        return self._answer(
            call_unique_id,
            call_result.ClearChargingProfile(status="Accepted"),
            soon(self.station.profiles_changed),
        )

    @on(Action.get_composite_schedule)
    async def on_get_composite_schedule(
        self,
        duration: int,
        evse_id: int,
        call_unique_id: str,
        charging_rate_unit: str | None = None,
        **kwargs: Any,
    ) -> call_result.GetCompositeSchedule:
        if not self._valid_connector(evse_id, allow_zero=True) or duration < 0:
            return self._answer(call_unique_id, call_result.GetCompositeSchedule(status="Rejected"))
        unit = charging_rate_unit or "A"
        start, periods = self.station.composite_schedule(evse_id, duration, unit)
        schedule = {
            "evse_id": evse_id,
            "duration": duration,
            "schedule_start": iso(start),
            "charging_rate_unit": unit,
            "charging_schedule_period": periods,
        }
        return self._answer(
            call_unique_id, call_result.GetCompositeSchedule(status="Accepted", schedule=schedule)
        )


class ChargingStation(SimulatedCharger):
    """A simulated OCPP 2.0.1 charging station (see the module docstring)."""

    subprotocol = SUBPROTOCOL
    connection_class = SimulatedChargingStation
    firmware_statuses = FIRMWARE_STATUSES
    final_firmware_statuses = FINAL_FIRMWARE_STATUSES
    upload_succeeded = "Uploaded"
    upload_failed = "UploadFailure"
    upload_status_message = "LogStatusNotification"

    def __init__(self, options: ChargerOptions) -> None:
        super().__init__(options)
        for key, value in own_defaults(organization=options.vendor).items():
            self.config.set(key, value)
        self.device_model = DeviceModel(self.config)
        self.boot_reason = "PowerUp"
        self.firmware_request_id: int | None = None
        self.firmware_task: asyncio.Task | None = None
        self.log_request_id: int | None = None
        self.reset_when_idle = False
        self.costs: dict[str, float] = {}

    # --- boot, heartbeat, status -------------------------------------------------------------------
    def boot_payload(self, reason: str | None = None) -> call.BootNotification:
        return call.BootNotification(
            charging_station={
                "model": self.options.model[:20],
                "vendor_name": self.options.vendor[:50],
                "serial_number": self.identity[:25],
                "firmware_version": self.firmware_version[:50],
            },
            reason=reason or self.boot_reason,
        )

    def boot_accepted(self) -> None:
        # A later connection without a reboot boots for no reason the station could name.
        self.boot_reason = "Unknown"

    def triggered_boot(self) -> None:
        self.boot_reason = "Triggered"
        self.wake_boot()

    def reboot(self, reason: str = "RemoteReset") -> None:
        """Close the connection and boot again with BootNotification reason `reason`."""
        self.boot_reason = reason
        super().reboot()

    def firmware_rebooted(self) -> None:
        self.reboot("FirmwareUpdate")

    def heartbeat_payload(self) -> call.Heartbeat:
        return call.Heartbeat()

    def status_targets(self) -> list[int]:
        """2.0.1 reports connectors only (the station as a whole has no StatusNotification)."""
        return list(self.connectors)

    def status_of(self, connector_id: int) -> str:
        """The 2.0.1 ConnectorStatus of EVSE `connector_id`'s connector (0: the station, as 1.6 would say)."""
        status = super().status_of(connector_id)
        if connector_id == 0 or status in ("Available", "Unavailable", "Reserved"):
            return status
        return "Occupied"

    def status_payload(self, connector_id: int, status: str) -> call.StatusNotification:
        return call.StatusNotification(
            timestamp=iso(clock.now()), connector_status=status, evse_id=connector_id, connector_id=1
        )

    def firmware_status_payload(self, status: str) -> call.FirmwareStatusNotification:
        request_id = self.firmware_request_id if status != "Idle" else None
        return call.FirmwareStatusNotification(status=status, request_id=request_id)

    def diagnostics_status_payload(self, status: str) -> call.LogStatusNotification:
        request_id = self.log_request_id if status != "Idle" else None
        return call.LogStatusNotification(status=status, request_id=request_id)

    async def notify_report(self, request_id: int, report_base: str) -> None:
        """NotifyReport in parts of ItemsPerMessage[GetReport] items each, tbc on all but the last."""
        data = self.device_model.report(report_base)
        size = max(1, self.config.integer("DeviceDataCtrlr.ItemsPerMessage.GetReport"))
        parts = [data[i : i + size] for i in range(0, len(data), size)]
        generated_at = iso(clock.now())
        for seq_no, part in enumerate(parts):
            await self.notify(
                call.NotifyReport(
                    request_id=request_id,
                    generated_at=generated_at,
                    seq_no=seq_no,
                    report_data=part,
                    tbc=seq_no < len(parts) - 1,
                )
            )

    # --- authorisation -----------------------------------------------------------------------------
    def authorize_payload(self, id_tag: str) -> call.Authorize:
        return call.Authorize(id_token=id_token(id_tag))

    def token_info(self, answer: Any) -> dict[str, Any] | None:
        return answer.id_token_info

    # --- transactions ------------------------------------------------------------------------------
    def event(
        self,
        tx: Transaction,
        event_type: str,
        trigger_reason: str,
        *,
        meter_value: list[dict[str, Any]] | None = None,
        id_tag: str | None = None,
        stopped_reason: str | None = None,
        charging_state: str | None = None,
        with_evse: bool = False,
    ) -> None:
        """Queue a TransactionEvent of `tx` with the next seqNo; `offline` when made without a connection."""
        seq_no, tx.seq_no = tx.seq_no, tx.seq_no + 1
        info: dict[str, Any] = {"transaction_id": tx.transaction_id}
        if charging_state:
            info["charging_state"] = charging_state
        if stopped_reason:
            info["stopped_reason"] = stopped_reason
        if tx.remote_start_id is not None and event_type == "Started":
            info["remote_start_id"] = tx.remote_start_id
        payload = call.TransactionEvent(
            event_type=event_type,
            timestamp=iso(clock.now()),
            trigger_reason=trigger_reason,
            seq_no=seq_no,
            transaction_info=info,
            meter_value=meter_value or None,
            offline=True if not self.accepted else None,
            reservation_id=tx.reservation_id if event_type == "Started" else None,
            evse={"id": tx.connector_id, "connector_id": 1} if with_evse or event_type == "Started" else None,
            id_token=id_token(id_tag) if id_tag else None,
        )
        self.enqueue(
            Outgoing(
                build=lambda: payload,
                transactional=True,
                on_result=lambda a: self.check_token(tx, id_tag, a.id_token_info),
            )
        )

    def reservation_ended(self, reservation: Reservation, status: str) -> None:
        payload = call.ReservationStatusUpdate(
            reservation_id=reservation.reservation_id, reservation_update_status=status
        )
        self.spawn(self.notify(payload))

    def send_started(self, tx: Transaction) -> None:
        tx.transaction_id = str(uuid.uuid4())
        connector = self.connectors[tx.connector_id]
        begin = connector.meter.sampled_values(
            self.config.items(TX_STARTED_MEASURANDS), context="Transaction.Begin"
        )
        self.event(
            tx,
            "Started",
            "RemoteStart" if tx.remote_start_id is not None else "Authorized",
            meter_value=[{"timestamp": iso(tx.started_at), "sampled_value": sampled_values(begin)}],
            id_tag=tx.id_tag,
            charging_state="Charging",
        )

    def send_stopped(
        self,
        tx: Transaction,
        *,
        reason: str,
        id_tag: str | None,
        stopped_at: datetime,
        meter_stop: int,
        end_values: list[dict[str, Any]],
    ) -> None:
        self.event(
            tx,
            "Ended",
            STOP_TRIGGERS.get(reason, "AbnormalCondition"),
            meter_value=[{"timestamp": iso(stopped_at), "sampled_value": sampled_values(end_values)}]
            if end_values
            else None,
            id_tag=id_tag,
            stopped_reason=reason,
            charging_state="EVConnected",
        )
        if self.reset_when_idle and not any(c.transaction for c in self.connectors.values()):
            self.reset_when_idle = False
            self.spawn(self._reset_after_queue("ScheduledReset"))

    def queue_meter_values(self, connector: Connector, tx: Transaction) -> None:
        """A periodic TransactionEvent Updated with the TxUpdatedMeasurands."""
        values = connector.meter.sampled_values(
            self.config.items("MeterValuesSampledData"), context="Sample.Periodic"
        )
        self.event(
            tx,
            "Updated",
            "MeterValuePeriodic",
            meter_value=[{"timestamp": iso(clock.now()), "sampled_value": sampled_values(values)}],
        )

    async def send_triggered(self, message: str, connector_id: int | None) -> None:
        if message != "TransactionEvent":
            await super().send_triggered(message, connector_id)
            return
        for target in [connector_id] if connector_id is not None else list(self.connectors):
            self.trigger_transaction_event(self.connectors[target])

    def trigger_transaction_event(self, connector: Connector) -> bool:
        """TriggerMessage(TransactionEvent): an Updated event with the current meter values."""
        tx = connector.transaction
        if tx is None:
            return False
        values = connector.meter.sampled_values(
            self.config.items("MeterValuesSampledData"), context="Trigger"
        )
        self.event(
            tx,
            "Updated",
            "Trigger",
            meter_value=[{"timestamp": iso(clock.now()), "sampled_value": sampled_values(values)}],
            charging_state="Charging" if connector.meter.power_w > 0 else "SuspendedEVSE",
            with_evse=True,
        )
        return True

    def meter_values_payload(self, connector: Connector, *, context: str, tx: Transaction | None) -> Any:
        values = connector.meter.sampled_values(self.config.items("MeterValuesSampledData"), context=context)
        return call.MeterValues(
            evse_id=connector.connector_id,
            meter_value=[{"timestamp": iso(clock.now()), "sampled_value": sampled_values(values)}],
        )

    def queued_events(self, transaction_id: str | None = None) -> int:
        """TransactionEvents waiting in the queue (of one transaction, when given)."""
        return sum(
            1
            for item in self._outbox
            if item.transactional
            and (transaction_id is None or item.build().transaction_info["transaction_id"] == transaction_id)
        )

    # --- reset -------------------------------------------------------------------------------------
    def request_reset(self, kind: str, evse_id: int | None) -> str:
        """Reset: Immediate ends the transactions (ImmediateReset) and reboots; OnIdle reboots at once
        when idle, else is Scheduled for when the last transaction ends. An EVSE reset only ends that
        EVSE's transaction (the EVSE has nothing else to restart here)."""
        if evse_id is not None:
            connector = self.connectors[evse_id]
            if connector.transaction is None:
                return "Accepted"
            if kind == "Immediate":
                self.stop_transaction(evse_id, reason="ImmediateReset")
                return "Accepted"
            return "Scheduled"
        busy = any(c.transaction is not None for c in self.connectors.values())
        if kind == "OnIdle" and busy:
            self.reset_when_idle = True
            return "Scheduled"
        for connector_id in self.connectors:
            self.stop_transaction(connector_id, reason="ImmediateReset")
        self.spawn(self._reset_after_queue("RemoteReset"))
        return "Accepted"

    async def _reset_after_queue(self, reason: str) -> None:
        """Deliver what is queued (the Ended events), then reboot."""
        await asyncio.sleep(0)
        await self.wait_queue_empty(self.options.call_timeout_s)
        self.reboot(reason)

    # --- firmware and logs -------------------------------------------------------------------------
    def request_firmware_update(
        self,
        *,
        request_id: int,
        location: str,
        retrieve_at: datetime,
        install_at: datetime | None,
        signature: str | None,
        retries: int,
        retry_interval_s: int,
    ) -> str:
        """UpdateFirmware: Accepted, or AcceptedCanceled when it replaces an update in progress."""
        status = "Accepted"
        if self.firmware_task is not None and not self.firmware_task.done():
            self.firmware_task.cancel()
            status = "AcceptedCanceled"
        self.firmware_request_id = request_id
        self.firmware_task = self.spawn(
            self.update_firmware(
                location=location,
                retrieve_at=retrieve_at,
                install_at=install_at,
                signature=signature,
                retries=retries,
                retry_interval_s=retry_interval_s,
            )
        )
        return status

    async def upload_log(
        self, *, request_id: int, location: str, file_name: str, retries: int, retry_interval_s: int
    ) -> None:
        """GetLog: the shared upload, its status notifications naming the request."""
        self.log_request_id = request_id
        await self.upload_file(
            location=location, file_name=file_name, retries=retries, retry_interval_s=retry_interval_s
        )
