"""A simulated OCPP 1.6J charger: the 1.6 messages of the shared behaviour (`base.py`) and the answers
to every CSMS→charger command.

A transaction is StartTransaction (its transactionId comes with the answer, so messages queued before
it read the id at send time), periodic MeterValues and StopTransaction with transactionData as
StopTxnSampledData asks; the charger reports connector 0 (itself) as well as every connector.
"""

from __future__ import annotations

import logging
from datetime import datetime
from typing import Any

from ocpp.routing import on
from ocpp.v16 import ChargePoint, call, call_result
from ocpp.v16.enums import Action

from tools.simulator import clock
from tools.simulator.base import SimulatedCharger, SimulatedConnection, soon
from tools.simulator.clock import iso
from tools.simulator.smartcharging import TX, Profile
from tools.simulator.state import Connector, Outgoing, Transaction

logger = logging.getLogger(__name__)
SUBPROTOCOL = "ocpp1.6"
FIRMWARE_STATUSES = frozenset(
    {"Idle", "Downloading", "Downloaded", "DownloadFailed", "Installing", "Installed", "InstallationFailed"}
)
RATE_UNITS = {"Current": "A", "Power": "W"}


class SimulatedChargePoint(SimulatedConnection, ChargePoint):
    """The `ocpp` library's 1.6 ChargePoint bound to a simulated charger (`self.station`): every
    CSMS→charger command, answered from the charger's state the way a real charger answers it."""

    station: Charger

    # --- transactions ------------------------------------------------------------------------------
    @on(Action.remote_start_transaction)
    async def on_remote_start_transaction(
        self,
        id_tag: str,
        call_unique_id: str,
        connector_id: int | None = None,
        charging_profile: dict[str, Any] | None = None,
        **kwargs: Any,
    ) -> call_result.RemoteStartTransaction:
        rejected = call_result.RemoteStartTransaction(status="Rejected")
        chosen = connector_id if connector_id is not None else self.station.first_free_connector(id_tag)
        profile = None
        if charging_profile is not None and chosen is not None:
            if charging_profile.get("charging_profile_purpose") != TX:
                return self._answer(call_unique_id, rejected)
            try:
                profile = Profile.from_payload(charging_profile, connector_id=chosen)
            except (KeyError, ValueError):
                return self._answer(call_unique_id, rejected)
        accepted, followup = self._remote_start(
            requested=chosen, tag=id_tag, profile=profile, remote_start_id=None
        )
        if not accepted:
            return self._answer(call_unique_id, rejected)
        return self._answer(call_unique_id, call_result.RemoteStartTransaction(status="Accepted"), followup)

    @on(Action.remote_stop_transaction)
    async def on_remote_stop_transaction(
        self, transaction_id: int, call_unique_id: str, **kwargs: Any
    ) -> call_result.RemoteStopTransaction:
        followup = self._remote_stop(transaction_id)
        status = "Accepted" if followup is not None else "Rejected"
        return self._answer(call_unique_id, call_result.RemoteStopTransaction(status=status), followup)

    @on(Action.unlock_connector)
    async def on_unlock_connector(
        self, connector_id: int, call_unique_id: str, **kwargs: Any
    ) -> call_result.UnlockConnector:
        if connector_id not in self.station.connectors:
            return self._answer(call_unique_id, call_result.UnlockConnector(status="NotSupported"))
        # A transaction on the connector ends first (as a StopTransaction with reason UnlockCommand).
        return self._answer(
            call_unique_id,
            call_result.UnlockConnector(status="Unlocked"),
            soon(lambda: self.station.stop_transaction(connector_id, reason="UnlockCommand")),
        )

    # --- the charger as a whole --------------------------------------------------------------------
    @on(Action.reset)
    async def on_reset(self, type: str, call_unique_id: str, **kwargs: Any) -> call_result.Reset:
        return self._answer(
            call_unique_id, call_result.Reset(status="Accepted"), lambda: self.station.reset(type)
        )

    @on(Action.change_availability)
    async def on_change_availability(
        self, connector_id: int, type: str, call_unique_id: str, **kwargs: Any
    ) -> call_result.ChangeAvailability:
        if not self._valid_connector(connector_id, allow_zero=True):
            return self._answer(call_unique_id, call_result.ChangeAvailability(status="Rejected"))
        status = self.station.change_availability(connector_id, operative=type == "Operative")
        return self._answer(
            call_unique_id,
            call_result.ChangeAvailability(status=status),
            soon(self.station.refresh_statuses),
        )

    @on(Action.change_configuration)
    async def on_change_configuration(
        self, key: str, value: str, call_unique_id: str, **kwargs: Any
    ) -> call_result.ChangeConfiguration:
        status = self.station.config.change(key, value)
        followup = None
        if status == "Accepted":
            followup = soon(lambda: self.station.configuration_changed([key]))
        return self._answer(call_unique_id, call_result.ChangeConfiguration(status=status), followup)

    @on(Action.get_configuration)
    async def on_get_configuration(
        self, call_unique_id: str, key: list[str] | None = None, **kwargs: Any
    ) -> call_result.GetConfiguration:
        known, unknown = self.station.config.report(key)
        return self._answer(
            call_unique_id, call_result.GetConfiguration(configuration_key=known, unknown_key=unknown or None)
        )

    @on(Action.clear_cache)
    async def on_clear_cache(self, call_unique_id: str, **kwargs: Any) -> call_result.ClearCache:
        return self._answer(call_unique_id, call_result.ClearCache(status=self.station.clear_cache()))

    @on(Action.data_transfer)
    async def on_data_transfer(
        self,
        vendor_id: str,
        call_unique_id: str,
        message_id: str | None = None,
        data: str | None = None,
        **kwargs: Any,
    ) -> call_result.DataTransfer:
        status = self._data_transfer_status(vendor_id, message_id)
        echo = data if status == "Accepted" else None
        return self._answer(call_unique_id, call_result.DataTransfer(status=status, data=echo))

    @on(Action.trigger_message)
    async def on_trigger_message(
        self, requested_message: str, call_unique_id: str, connector_id: int | None = None, **kwargs: Any
    ) -> call_result.TriggerMessage:
        if connector_id is not None and not self._valid_connector(connector_id, allow_zero=True):
            return self._answer(call_unique_id, call_result.TriggerMessage(status="Rejected"))
        return self._answer(
            call_unique_id,
            call_result.TriggerMessage(status="Accepted"),
            lambda: self.station.send_triggered(requested_message, connector_id),
        )

    # --- firmware and diagnostics ------------------------------------------------------------------
    @on(Action.get_diagnostics)
    async def on_get_diagnostics(
        self,
        location: str,
        call_unique_id: str,
        retries: int | None = None,
        retry_interval: int | None = None,
        **kwargs: Any,
    ) -> call_result.GetDiagnostics:
        file_name = f"{self.station.identity}-diagnostics-{clock.now():%Y%m%dT%H%M%SZ}.log"[:255]
        return self._answer(
            call_unique_id,
            call_result.GetDiagnostics(file_name=file_name),
            lambda: self.station.upload_file(
                location=location,
                file_name=file_name,
                retries=retries or 0,
                retry_interval_s=retry_interval or 0,
            ),
        )

    @on(Action.update_firmware)
    async def on_update_firmware(
        self,
        location: str,
        retrieve_date: str,
        call_unique_id: str,
        retries: int | None = None,
        retry_interval: int | None = None,
        **kwargs: Any,
    ) -> call_result.UpdateFirmware:
        retrieve_at = clock.parse_iso8601(retrieve_date)
        return self._answer(
            call_unique_id,
            call_result.UpdateFirmware(),
            lambda: self.station.update_firmware(
                location=location,
                retrieve_at=retrieve_at,
                retries=retries or 0,
                retry_interval_s=retry_interval or 0,
            ),
        )

    # --- reservations ------------------------------------------------------------------------------
    @on(Action.reserve_now)
    async def on_reserve_now(
        self,
        connector_id: int,
        expiry_date: str,
        id_tag: str,
        reservation_id: int,
        call_unique_id: str,
        parent_id_tag: str | None = None,
        **kwargs: Any,
    ) -> call_result.ReserveNow:
        station = self.station
        if connector_id == 0:
            if not station.config.boolean("ReserveConnectorZeroSupported"):
                return self._answer(call_unique_id, call_result.ReserveNow(status="Rejected"))
        elif connector_id not in station.connectors:
            return self._answer(call_unique_id, call_result.ReserveNow(status="Rejected"))
        status = station.reserve(
            reservation_id=reservation_id,
            connector_id=connector_id,
            id_tag=id_tag,
            parent_id_tag=parent_id_tag,
            expires_at=clock.parse_iso8601(expiry_date),
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
        list_version: int,
        update_type: str,
        call_unique_id: str,
        local_authorization_list: list[dict[str, Any]] | None = None,
        **kwargs: Any,
    ) -> call_result.SendLocalList:
        config = self.station.config
        entries = local_authorization_list or []
        if not config.boolean("LocalAuthListEnabled"):
            status = "NotSupported"
        elif len(entries) > config.integer("SendLocalListMaxLength"):
            status = "Failed"
        else:
            status = self.station.apply_local_list(
                version=list_version,
                update_type=update_type,
                entries=[(entry["id_tag"], entry.get("id_tag_info")) for entry in entries],
            )
        return self._answer(call_unique_id, call_result.SendLocalList(status=status))

    @on(Action.get_local_list_version)
    async def on_get_local_list_version(
        self, call_unique_id: str, **kwargs: Any
    ) -> call_result.GetLocalListVersion:
        return self._answer(
            call_unique_id, call_result.GetLocalListVersion(list_version=self.station.local_list_version())
        )

    # --- smart charging ----------------------------------------------------------------------------
    @on(Action.set_charging_profile)
    async def on_set_charging_profile(
        self, connector_id: int, cs_charging_profiles: dict[str, Any], call_unique_id: str, **kwargs: Any
    ) -> call_result.SetChargingProfile:
        station = self.station
        rejected = call_result.SetChargingProfile(status="Rejected")
        if not self._valid_connector(connector_id, allow_zero=True):
            return self._answer(call_unique_id, rejected)
        try:
            profile = Profile.from_payload(cs_charging_profiles, connector_id=connector_id)
        except (KeyError, ValueError):
            return self._answer(call_unique_id, rejected)
        units = [
            RATE_UNITS[item]
            for item in station.config.items("ChargingScheduleAllowedChargingRateUnit")
            if item in RATE_UNITS
        ]
        if not station.install_profile(profile, rate_units=units):
            return self._answer(call_unique_id, rejected)
        return self._answer(
            call_unique_id, call_result.SetChargingProfile(status="Accepted"), soon(station.profiles_changed)
        )

    @on(Action.clear_charging_profile)
    async def on_clear_charging_profile(
        self,
        call_unique_id: str,
        id: int | None = None,
        connector_id: int | None = None,
        charging_profile_purpose: str | None = None,
        stack_level: int | None = None,
        **kwargs: Any,
    ) -> call_result.ClearChargingProfile:
        removed = self.station.profiles.clear(
            profile_id=id,
            connector_id=connector_id,
            purpose=charging_profile_purpose,
            stack_level=stack_level,
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
        connector_id: int,
        duration: int,
        call_unique_id: str,
        charging_rate_unit: str | None = None,
        **kwargs: Any,
    ) -> call_result.GetCompositeSchedule:
        if not self._valid_connector(connector_id, allow_zero=True) or duration < 0:
            return self._answer(call_unique_id, call_result.GetCompositeSchedule(status="Rejected"))
        unit = charging_rate_unit or "A"
        start, periods = self.station.composite_schedule(connector_id, duration, unit)
        schedule = {
            "duration": duration,
            "start_schedule": iso(start),
            "charging_rate_unit": unit,
            "charging_schedule_period": periods,
        }
        return self._answer(
            call_unique_id,
            call_result.GetCompositeSchedule(
                status="Accepted",
                connector_id=connector_id,
                schedule_start=iso(start),
                charging_schedule=schedule,
            ),
        )


class Charger(SimulatedCharger):
    """A simulated OCPP 1.6 charger (see the module docstring)."""

    subprotocol = SUBPROTOCOL
    connection_class = SimulatedChargePoint
    firmware_statuses = FIRMWARE_STATUSES
    final_firmware_statuses = frozenset({"Installed", "DownloadFailed", "InstallationFailed"})
    upload_succeeded = "Uploaded"
    upload_failed = "UploadFailed"
    upload_status_message = "DiagnosticsStatusNotification"

    # --- boot, heartbeat, status -------------------------------------------------------------------
    def boot_payload(self, reason: str | None = None) -> call.BootNotification:
        return call.BootNotification(
            charge_point_model=self.options.model[:20],
            charge_point_vendor=self.options.vendor[:20],
            charge_point_serial_number=self.identity[:25],
            firmware_version=self.firmware_version[:50],
            meter_type="SIM-METER",
        )

    def heartbeat_payload(self) -> call.Heartbeat:
        return call.Heartbeat()

    def status_targets(self) -> list[int]:
        """What a status notification is sent for: 0 (the charge point) and every connector."""
        return list(range(0, len(self.connectors) + 1))

    def status_payload(self, connector_id: int, status: str) -> call.StatusNotification:
        return call.StatusNotification(
            connector_id=connector_id, error_code="NoError", status=status, timestamp=iso(clock.now())
        )

    def firmware_status_payload(self, status: str) -> call.FirmwareStatusNotification:
        return call.FirmwareStatusNotification(status=status)

    def diagnostics_status_payload(self, status: str) -> call.DiagnosticsStatusNotification:
        return call.DiagnosticsStatusNotification(status=status)

    # --- authorisation -----------------------------------------------------------------------------
    def authorize_payload(self, id_tag: str) -> call.Authorize:
        return call.Authorize(id_tag=id_tag)

    def token_info(self, answer: Any) -> dict[str, Any] | None:
        return answer.id_tag_info

    # --- transactions ------------------------------------------------------------------------------
    def send_started(self, tx: Transaction) -> None:
        """Queue the StartTransaction; its answer brings the transactionId."""
        start = call.StartTransaction(
            connector_id=tx.connector_id,
            id_tag=tx.id_tag,
            meter_start=tx.meter_start_wh,
            timestamp=iso(tx.started_at),
            reservation_id=tx.reservation_id,
        )
        self.enqueue(
            Outgoing(build=lambda: start, transactional=True, on_result=lambda a: self._started(tx, a))
        )

    def _started(self, tx: Transaction, answer: Any) -> None:
        tx.transaction_id = answer.transaction_id
        self.check_token(tx, tx.id_tag, answer.id_tag_info)

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
        """Queue the StopTransaction with transactionData (dropped when the start was never answered)."""
        data = []
        if tx.begin_values:
            data.append({"timestamp": iso(tx.started_at), "sampledValue": tx.begin_values})
        if end_values:
            data.append({"timestamp": iso(stopped_at), "sampledValue": end_values})

        def build() -> call.StopTransaction | None:
            if tx.transaction_id is None:
                logger.warning(
                    "%s: StopTransaction dropped: its StartTransaction was never answered", self.identity
                )
                return None
            return call.StopTransaction(
                meter_stop=meter_stop,
                timestamp=iso(stopped_at),
                transaction_id=tx.transaction_id,
                reason=reason,
                id_tag=id_tag,
                transaction_data=data or None,
            )

        self.enqueue(
            Outgoing(
                build=build, transactional=True, on_result=lambda a: self.remember(id_tag, a.id_tag_info)
            )
        )

    def meter_values_payload(
        self, connector: Connector, *, context: str, tx: Transaction | None
    ) -> call.MeterValues:
        values = connector.meter.sampled_values(self.config.items("MeterValuesSampledData"), context=context)
        return call.MeterValues(
            connector_id=connector.connector_id,
            meter_value=[{"timestamp": iso(clock.now()), "sampledValue": values}],
            transaction_id=tx.transaction_id if tx is not None else None,
        )

    def queue_meter_values(self, connector: Connector, tx: Transaction) -> None:
        """Queue a periodic MeterValues of the transaction (its transactionId is read at send time)."""
        values = connector.meter.sampled_values(
            self.config.items("MeterValuesSampledData"), context="Sample.Periodic"
        )
        meter_value = [{"timestamp": iso(clock.now()), "sampledValue": values}]
        self.enqueue(
            Outgoing(
                build=lambda: call.MeterValues(
                    connector_id=connector.connector_id,
                    meter_value=meter_value,
                    transaction_id=tx.transaction_id,
                ),
                transactional=True,
            )
        )

    async def reset(self, kind: str) -> None:
        """Reset.req: stop every transaction, send the stops first when soft (a hard reset sends them
        after the reboot), then reboot."""
        reason = "SoftReset" if kind == "Soft" else "HardReset"
        for connector_id in self.connectors:
            self.stop_transaction(connector_id, reason=reason)
        if kind == "Soft":
            await self.wait_queue_empty(self.options.call_timeout_s)
        self.reboot()
