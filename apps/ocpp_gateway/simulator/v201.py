"""The simulated charging station's OCPP 2.0.1 side of one connection: every CSMS→station command,
answered from the station's state the way a station answers it.

The same rules as `v16.py`: handlers are named `on_<action>`, decide the answer at once and never
wait for the CSMS; anything that sends requests afterwards (the TransactionEvent after a remote start,
the NotifyReport after GetBaseReport, a triggered message, ...) is a follow-up that `@after` starts
as a station task once the answer has been sent.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

from ocpp.routing import after, on
from ocpp.v201 import ChargePoint, call, call_result
from ocpp.v201.enums import Action

from apps.ocpp_gateway.simulator.smartcharging import CHARGE_POINT_MAX, TX, TX_DEFAULT, Profile
from apps.ocpp_gateway.simulator.v16 import DATA_TRANSFER_MESSAGES, Followup, iso, library_logger, soon
from cpo import clock

if TYPE_CHECKING:
    from websockets.asyncio.client import ClientConnection

    from apps.ocpp_gateway.simulator.station import ChargingStation

logger = logging.getLogger(__name__)
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


class SimulatedChargingStation(ChargePoint):
    """The `ocpp` library's 2.0.1 ChargePoint bound to a simulated station (`self.station`)."""

    def __init__(self, station: ChargingStation, connection: ClientConnection) -> None:
        super().__init__(
            station.identity,
            connection,
            response_timeout=station.options.call_timeout_s,
            logger=library_logger,
        )
        self.station = station
        self._followups: dict[str, Followup] = {}

    def _answer(self, unique_id: str, result: Any, followup: Followup | None = None) -> Any:
        self.station.stats.commands_answered += 1
        if followup is not None:
            self._followups[unique_id] = followup
        return result

    def _after(self, unique_id: str) -> None:
        followup = self._followups.pop(unique_id, None)
        if followup is not None:
            self.station.spawn(followup())

    def _valid_evse(self, evse_id: int | None, *, allow_zero: bool = False) -> bool:
        return evse_id in self.station.connectors or (allow_zero and evse_id == 0)

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
        station = self.station
        rejected = call_result.RequestStartTransaction(status="Rejected")
        tag = id_token["id_token"]
        chosen = evse_id if evse_id is not None else station.first_free_connector(tag)
        if not station.accepted or chosen is None or not station.free_for(chosen, tag):
            return self._answer(call_unique_id, rejected)
        profile = None
        if charging_profile is not None:
            try:
                profile = profile_from_v201(charging_profile, evse_id=chosen)
            except (KeyError, ValueError, IndexError):
                return self._answer(call_unique_id, rejected)
            if profile.purpose != TX:
                return self._answer(call_unique_id, rejected)
        authorize = station.config.boolean("AuthorizeRemoteTxRequests")
        return self._answer(
            call_unique_id,
            call_result.RequestStartTransaction(status="Accepted"),
            lambda: station.start_transaction(
                chosen, tag, authorize=authorize, profile=profile, remote_start_id=remote_start_id
            ),
        )

    @after(Action.request_start_transaction)
    def after_request_start_transaction(self, call_unique_id: str, **kwargs: Any) -> None:
        self._after(call_unique_id)

    @on(Action.request_stop_transaction)
    async def on_request_stop_transaction(
        self, transaction_id: str, call_unique_id: str, **kwargs: Any
    ) -> call_result.RequestStopTransaction:
        connector_id = self.station.connector_with_transaction(transaction_id)
        if connector_id is None:
            return self._answer(call_unique_id, call_result.RequestStopTransaction(status="Rejected"))
        return self._answer(
            call_unique_id,
            call_result.RequestStopTransaction(status="Accepted"),
            soon(lambda: self.station.stop_transaction(connector_id, reason="Remote")),
        )

    @after(Action.request_stop_transaction)
    def after_request_stop_transaction(self, call_unique_id: str, **kwargs: Any) -> None:
        self._after(call_unique_id)

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
        if evse_id is not None and not self._valid_evse(evse_id):
            return self._answer(call_unique_id, call_result.Reset(status="Rejected"))
        return self._answer(
            call_unique_id, call_result.Reset(status=self.station.request_reset(type, evse_id))
        )

    @on(Action.change_availability)
    async def on_change_availability(
        self, operational_status: str, call_unique_id: str, evse: dict[str, Any] | None = None, **kwargs: Any
    ) -> call_result.ChangeAvailability:
        evse_id = (evse or {}).get("id", 0)
        if not self._valid_evse(evse_id, allow_zero=True) or (evse or {}).get("connector_id", 1) != 1:
            return self._answer(call_unique_id, call_result.ChangeAvailability(status="Rejected"))
        status = self.station.change_availability(evse_id, operative=operational_status == "Operative")
        return self._answer(
            call_unique_id, call_result.ChangeAvailability(status=status), soon(self.station.refresh_statuses)
        )

    @after(Action.change_availability)
    def after_change_availability(self, call_unique_id: str, **kwargs: Any) -> None:
        self._after(call_unique_id)

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
        followup = soon(lambda: self._configuration_changed(changed)) if changed else None
        return self._answer(call_unique_id, call_result.SetVariables(set_variable_result=results), followup)

    def _configuration_changed(self, keys: list[str]) -> None:
        station = self.station
        if "HeartbeatInterval" in keys:
            station.restart_heartbeat()
        if "MeterValueSampleInterval" in keys:
            station.restart_metering()
        if "AuthorizationKey" in keys:
            # A01.FR.11: disconnect (keeping queued messages) and connect with the new password.
            station.reconnect()

    @after(Action.set_variables)
    def after_set_variables(self, call_unique_id: str, **kwargs: Any) -> None:
        self._after(call_unique_id)

    @on(Action.get_base_report)
    async def on_get_base_report(
        self, request_id: int, report_base: str, call_unique_id: str, **kwargs: Any
    ) -> call_result.GetBaseReport:
        if report_base not in REPORT_BASES:
            return self._answer(call_unique_id, call_result.GetBaseReport(status="NotSupported"))
        return self._answer(
            call_unique_id,
            call_result.GetBaseReport(status="Accepted"),
            lambda: self._notify_report(request_id, report_base),
        )

    async def _notify_report(self, request_id: int, report_base: str) -> None:
        """NotifyReport in parts of ItemsPerMessage[GetReport] items each, tbc on all but the last."""
        station = self.station
        data = station.device_model.report(report_base)
        size = max(1, station.config.integer("DeviceDataCtrlr.ItemsPerMessage.GetReport"))
        parts = [data[i : i + size] for i in range(0, len(data), size)]
        generated_at = iso(clock.now())
        for seq_no, part in enumerate(parts):
            await station.notify(
                call.NotifyReport(
                    request_id=request_id,
                    generated_at=generated_at,
                    seq_no=seq_no,
                    report_data=part,
                    tbc=seq_no < len(parts) - 1,
                )
            )

    @after(Action.get_base_report)
    def after_get_base_report(self, call_unique_id: str, **kwargs: Any) -> None:
        self._after(call_unique_id)

    @on(Action.set_network_profile)
    async def on_set_network_profile(
        self, configuration_slot: int, connection_data: dict[str, Any], call_unique_id: str, **kwargs: Any
    ) -> call_result.SetNetworkProfile:
        # The simulator keeps its one connection; it accepts a profile for any slot but the one in use.
        status = "Accepted" if configuration_slot != 1 else "Rejected"
        return self._answer(call_unique_id, call_result.SetNetworkProfile(status=status))

    @on(Action.clear_cache)
    async def on_clear_cache(self, call_unique_id: str, **kwargs: Any) -> call_result.ClearCache:
        if not self.station.config.boolean("AuthorizationCacheEnabled"):
            return self._answer(call_unique_id, call_result.ClearCache(status="Rejected"))
        self.station.auth.cache.clear()
        return self._answer(call_unique_id, call_result.ClearCache(status="Accepted"))

    @on(Action.data_transfer)
    async def on_data_transfer(
        self,
        vendor_id: str,
        call_unique_id: str,
        message_id: str | None = None,
        data: Any = None,
        **kwargs: Any,
    ) -> call_result.DataTransfer:
        if vendor_id != self.station.options.vendor:
            return self._answer(call_unique_id, call_result.DataTransfer(status="UnknownVendorId"))
        if message_id is not None and message_id not in DATA_TRANSFER_MESSAGES:
            return self._answer(call_unique_id, call_result.DataTransfer(status="UnknownMessageId"))
        return self._answer(call_unique_id, call_result.DataTransfer(status="Accepted", data=data))

    @on(Action.trigger_message)
    async def on_trigger_message(
        self, requested_message: str, call_unique_id: str, evse: dict[str, Any] | None = None, **kwargs: Any
    ) -> call_result.TriggerMessage:
        if requested_message not in TRIGGERABLE:
            return self._answer(call_unique_id, call_result.TriggerMessage(status="NotImplemented"))
        evse_id = (evse or {}).get("id")
        if evse_id is not None and not self._valid_evse(evse_id):
            return self._answer(call_unique_id, call_result.TriggerMessage(status="Rejected"))
        if requested_message == "TransactionEvent" and not any(
            c.transaction for c in self.station.connectors.values() if evse_id in (None, c.connector_id)
        ):
            return self._answer(call_unique_id, call_result.TriggerMessage(status="Rejected"))
        return self._answer(
            call_unique_id,
            call_result.TriggerMessage(status="Accepted"),
            lambda: self._send_triggered(requested_message, evse_id),
        )

    @after(Action.trigger_message)
    def after_trigger_message(self, call_unique_id: str, **kwargs: Any) -> None:
        self._after(call_unique_id)

    async def _send_triggered(self, message: str, evse_id: int | None) -> None:
        """Send the message a TriggerMessage asked for, with current information only."""
        station = self.station
        targets = [evse_id] if evse_id is not None else list(station.connectors)
        if message == "BootNotification":
            if station.accepted:
                answer = await station.notify(station.boot_payload("Triggered"))
                if answer is not None and answer.interval > 0:
                    station.config.set("HeartbeatInterval", str(answer.interval))
                    station.restart_heartbeat()
            else:
                station.boot_reason = "Triggered"
                station.wake_boot()
        elif message == "Heartbeat":
            await station.notify(call.Heartbeat())
        elif message == "StatusNotification":
            for target in targets:
                await station.notify(station.status_payload(target, station.status_of(target)))
        elif message == "MeterValues":
            for target in targets:
                connector = station.connectors[target]
                await station.notify(
                    station.meter_values_payload(connector, context="Trigger", tx=connector.transaction)
                )
        elif message == "TransactionEvent":
            for target in targets:
                station.trigger_transaction_event(station.connectors[target])
        elif message == "FirmwareStatusNotification":
            await station.notify(station.firmware_status_payload(station.firmware_status))
        elif message == "LogStatusNotification":
            await station.notify(station.diagnostics_status_payload(station.diagnostics_status))

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

    @after(Action.get_log)
    def after_get_log(self, call_unique_id: str, **kwargs: Any) -> None:
        self._after(call_unique_id)

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
        chosen = evse_id if evse_id is not None else station.first_free_connector(tag)
        if chosen is None or not self._valid_evse(chosen):
            return self._answer(call_unique_id, call_result.ReserveNow(status="Occupied"))
        status = station.reserve(
            reservation_id=id,
            connector_id=chosen,
            id_tag=tag,
            parent_id_tag=(group_id_token or {}).get("id_token"),
            expires_at=clock.parse_iso8601(expiry_date_time),
        )
        return self._answer(
            call_unique_id, call_result.ReserveNow(status=status), soon(station.refresh_statuses)
        )

    @after(Action.reserve_now)
    def after_reserve_now(self, call_unique_id: str, **kwargs: Any) -> None:
        self._after(call_unique_id)

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

    @after(Action.cancel_reservation)
    def after_cancel_reservation(self, call_unique_id: str, **kwargs: Any) -> None:
        self._after(call_unique_id)

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
        station = self.station
        config = station.config
        entries = local_authorization_list or []
        if not config.boolean("LocalAuthListEnabled") or len(entries) > config.integer(
            "SendLocalListMaxLength"
        ):
            return self._answer(call_unique_id, call_result.SendLocalList(status="Failed"))
        if update_type == "Differential" and version_number <= station.auth.version:
            return self._answer(call_unique_id, call_result.SendLocalList(status="VersionMismatch"))
        updated = {} if update_type == "Full" else dict(station.auth.entries)
        for entry in entries:
            tag, info = entry["id_token"]["id_token"], entry.get("id_token_info")
            if info is None:
                updated.pop(tag, None)
            else:
                updated[tag] = info
        if len(updated) > config.integer("LocalAuthListMaxLength"):
            return self._answer(call_unique_id, call_result.SendLocalList(status="Failed"))
        station.auth.entries, station.auth.version = updated, version_number
        for tag in updated:
            station.auth.cache.pop(tag, None)
        return self._answer(call_unique_id, call_result.SendLocalList(status="Accepted"))

    @on(Action.get_local_list_version)
    async def on_get_local_list_version(
        self, call_unique_id: str, **kwargs: Any
    ) -> call_result.GetLocalListVersion:
        auth = self.station.auth
        return self._answer(
            call_unique_id,
            call_result.GetLocalListVersion(version_number=auth.version if auth.entries else 0),
        )

    # --- smart charging ----------------------------------------------------------------------------
    @on(Action.set_charging_profile)
    async def on_set_charging_profile(
        self, evse_id: int, charging_profile: dict[str, Any], call_unique_id: str, **kwargs: Any
    ) -> call_result.SetChargingProfile:
        station = self.station
        rejected = call_result.SetChargingProfile(status="Rejected")
        if not self._valid_evse(evse_id, allow_zero=True):
            return self._answer(call_unique_id, rejected)
        try:
            profile = profile_from_v201(charging_profile, evse_id=evse_id)
        except (KeyError, ValueError, IndexError):
            return self._answer(call_unique_id, rejected)
        if not self._profile_acceptable(profile):
            return self._answer(call_unique_id, rejected)
        before = list(station.profiles.profiles)
        station.profiles.install(profile)
        if len(station.profiles.profiles) > station.config.integer("MaxChargingProfilesInstalled"):
            station.profiles.profiles = before
            return self._answer(call_unique_id, rejected)
        return self._answer(
            call_unique_id, call_result.SetChargingProfile(status="Accepted"), soon(station.profiles_changed)
        )

    def _profile_acceptable(self, profile: Profile) -> bool:
        config = self.station.config
        if (
            profile.stack_level > config.integer("ChargeProfileMaxStackLevel")
            or len(profile.periods) > config.integer("ChargingScheduleMaxPeriods")
            or profile.unit not in config.items("SmartChargingCtrlr.RateUnit")
        ):
            return False
        if profile.purpose == CHARGE_POINT_MAX:
            return profile.connector_id == 0
        if profile.purpose == TX:
            connector = self.station.connectors.get(profile.connector_id)
            tx = connector.transaction if connector is not None else None
            return tx is not None and profile.transaction_id in (None, tx.transaction_id)
        return True

    @after(Action.set_charging_profile)
    def after_set_charging_profile(self, call_unique_id: str, **kwargs: Any) -> None:
        self._after(call_unique_id)

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

    @after(Action.clear_charging_profile)
    def after_clear_charging_profile(self, call_unique_id: str, **kwargs: Any) -> None:
        self._after(call_unique_id)

    @on(Action.get_composite_schedule)
    async def on_get_composite_schedule(
        self,
        duration: int,
        evse_id: int,
        call_unique_id: str,
        charging_rate_unit: str | None = None,
        **kwargs: Any,
    ) -> call_result.GetCompositeSchedule:
        station = self.station
        if not self._valid_evse(evse_id, allow_zero=True) or duration < 0:
            return self._answer(call_unique_id, call_result.GetCompositeSchedule(status="Rejected"))
        options = station.options
        unit = charging_rate_unit or "A"
        physical_a = options.max_power_w / (options.voltage_v * options.phases)
        if evse_id == 0:
            physical_a *= len(station.connectors)
            tx_start = None
        else:
            tx = station.connectors[evse_id].transaction
            tx_start = tx.started_at if tx is not None else None
        start = clock.now().replace(microsecond=0)
        periods = station.profiles.composite(
            evse_id,
            start,
            duration,
            unit=unit,
            physical_max_a=physical_a,
            transaction_start=tx_start,
            max_periods=station.config.integer("ChargingScheduleMaxPeriods"),
        )
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
