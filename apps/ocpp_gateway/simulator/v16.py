"""The simulated charger's OCPP 1.6 side of one connection: every CSMS→charger command, answered from
the charger's state the way a real charger answers it.

Handlers are named `on_<action>` (a name like `start` would replace `ChargePoint.start()`, FIELD-NOTES).
They decide the answer at once and never wait for the CSMS: the library's receive loop handles one
message at a time, so anything that sends requests (StartTransaction after RemoteStartTransaction, the
triggered message after TriggerMessage, ...) is a follow-up that `@after` starts as a charger task once
the answer has been sent.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from ocpp.routing import after, on
from ocpp.v16 import ChargePoint, call, call_result
from ocpp.v16.enums import Action

from apps.ocpp_gateway.simulator.smartcharging import CHARGE_POINT_MAX, TX, Profile
from cpo import clock

if TYPE_CHECKING:
    from websockets.asyncio.client import ClientConnection

    from apps.ocpp_gateway.simulator.charger import Charger

# The library logs every frame at INFO; a fleet quietens it through this logger.
library_logger = logging.getLogger("ocpp")
DATA_TRANSFER_MESSAGES = frozenset({"Echo"})
Followup = Callable[[], Awaitable[Any]]


def iso(value: datetime) -> str:
    """UTC with milliseconds and a Z, the way chargers usually write OCPP timestamps."""
    value = value.astimezone(UTC)
    return value.strftime("%Y-%m-%dT%H:%M:%S.") + f"{value.microsecond // 1000:03d}Z"


def soon(action: Callable[[], Any]) -> Followup:
    """A follow-up that only changes state (and queues messages), wrapped as a coroutine function."""

    async def run() -> None:
        action()

    return run


class SimulatedChargePoint(ChargePoint):
    """The `ocpp` library's 1.6 ChargePoint bound to a simulated charger (`self.station`)."""

    def __init__(self, station: Charger, connection: ClientConnection) -> None:
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

    def _valid_connector(self, connector_id: int, *, allow_zero: bool) -> bool:
        return connector_id in self.station.connectors or (allow_zero and connector_id == 0)

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
        station = self.station
        rejected = call_result.RemoteStartTransaction(status="Rejected")
        if not station.accepted:
            return self._answer(call_unique_id, rejected)
        chosen = connector_id if connector_id is not None else station.first_free_connector(id_tag)
        if chosen is None or not station.free_for(chosen, id_tag):
            return self._answer(call_unique_id, rejected)
        profile = None
        if charging_profile is not None:
            if charging_profile.get("charging_profile_purpose") != TX:
                return self._answer(call_unique_id, rejected)
            try:
                profile = Profile.from_payload(charging_profile, connector_id=chosen)
            except (KeyError, ValueError):
                return self._answer(call_unique_id, rejected)
        authorize = station.config.boolean("AuthorizeRemoteTxRequests")
        return self._answer(
            call_unique_id,
            call_result.RemoteStartTransaction(status="Accepted"),
            lambda: station.start_transaction(chosen, id_tag, authorize=authorize, profile=profile),
        )

    @after(Action.remote_start_transaction)
    def after_remote_start_transaction(self, call_unique_id: str, **kwargs: Any) -> None:
        self._after(call_unique_id)

    @on(Action.remote_stop_transaction)
    async def on_remote_stop_transaction(
        self, transaction_id: int, call_unique_id: str, **kwargs: Any
    ) -> call_result.RemoteStopTransaction:
        connector_id = self.station.connector_with_transaction(transaction_id)
        if connector_id is None:
            return self._answer(call_unique_id, call_result.RemoteStopTransaction(status="Rejected"))
        return self._answer(
            call_unique_id,
            call_result.RemoteStopTransaction(status="Accepted"),
            soon(lambda: self.station.stop_transaction(connector_id, reason="Remote")),
        )

    @after(Action.remote_stop_transaction)
    def after_remote_stop_transaction(self, call_unique_id: str, **kwargs: Any) -> None:
        self._after(call_unique_id)

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

    @after(Action.unlock_connector)
    def after_unlock_connector(self, call_unique_id: str, **kwargs: Any) -> None:
        self._after(call_unique_id)

    # --- the charger as a whole --------------------------------------------------------------------
    @on(Action.reset)
    async def on_reset(self, type: str, call_unique_id: str, **kwargs: Any) -> call_result.Reset:
        return self._answer(
            call_unique_id, call_result.Reset(status="Accepted"), lambda: self.station.reset(type)
        )

    @after(Action.reset)
    def after_reset(self, call_unique_id: str, **kwargs: Any) -> None:
        self._after(call_unique_id)

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

    @after(Action.change_availability)
    def after_change_availability(self, call_unique_id: str, **kwargs: Any) -> None:
        self._after(call_unique_id)

    @on(Action.change_configuration)
    async def on_change_configuration(
        self, key: str, value: str, call_unique_id: str, **kwargs: Any
    ) -> call_result.ChangeConfiguration:
        status = self.station.config.change(key, value)
        followup = None
        if status == "Accepted":
            followup = soon(lambda: self._configuration_changed(key))
        return self._answer(call_unique_id, call_result.ChangeConfiguration(status=status), followup)

    def _configuration_changed(self, key: str) -> None:
        station = self.station
        if key == "HeartbeatInterval":
            station.restart_heartbeat()
        elif key == "MeterValueSampleInterval":
            station.restart_metering()
        elif key == "AuthorizationKey":
            # Security whitepaper A01: disconnect (keeping queued messages) and connect with the new key.
            station.reconnect()

    @after(Action.change_configuration)
    def after_change_configuration(self, call_unique_id: str, **kwargs: Any) -> None:
        self._after(call_unique_id)

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
        data: str | None = None,
        **kwargs: Any,
    ) -> call_result.DataTransfer:
        if vendor_id != self.station.options.vendor:
            return self._answer(call_unique_id, call_result.DataTransfer(status="UnknownVendorId"))
        if message_id is not None and message_id not in DATA_TRANSFER_MESSAGES:
            return self._answer(call_unique_id, call_result.DataTransfer(status="UnknownMessageId"))
        return self._answer(call_unique_id, call_result.DataTransfer(status="Accepted", data=data))

    @on(Action.trigger_message)
    async def on_trigger_message(
        self, requested_message: str, call_unique_id: str, connector_id: int | None = None, **kwargs: Any
    ) -> call_result.TriggerMessage:
        if connector_id is not None and not self._valid_connector(connector_id, allow_zero=True):
            return self._answer(call_unique_id, call_result.TriggerMessage(status="Rejected"))
        return self._answer(
            call_unique_id,
            call_result.TriggerMessage(status="Accepted"),
            lambda: self._send_triggered(requested_message, connector_id),
        )

    @after(Action.trigger_message)
    def after_trigger_message(self, call_unique_id: str, **kwargs: Any) -> None:
        self._after(call_unique_id)

    async def _send_triggered(self, message: str, connector_id: int | None) -> None:
        """Send the message a TriggerMessage asked for, with current information only."""
        station = self.station
        if message == "BootNotification":
            if station.accepted:
                answer = await station.notify(station.boot_payload())
                if answer is not None and answer.interval > 0:
                    station.config.set("HeartbeatInterval", str(answer.interval))
                    station.restart_heartbeat()
            else:
                station.wake_boot()
        elif message == "Heartbeat":
            await station.notify(call.Heartbeat())
        elif message == "StatusNotification":
            targets = [connector_id] if connector_id is not None else range(0, len(station.connectors) + 1)
            for target in targets:
                await station.notify(station.status_payload(target, station.status_of(target)))
        elif message == "MeterValues":
            targets = [connector_id] if connector_id else list(station.connectors)
            for target in targets:
                connector = station.connectors[target]
                await station.notify(
                    station.meter_values_payload(connector, context="Trigger", tx=connector.transaction)
                )
        elif message == "FirmwareStatusNotification":
            await station.notify(call.FirmwareStatusNotification(status=station.firmware_status))
        elif message == "DiagnosticsStatusNotification":
            await station.notify(call.DiagnosticsStatusNotification(status=station.diagnostics_status))

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
            lambda: self.station.upload_diagnostics(
                location=location,
                file_name=file_name,
                retries=retries or 0,
                retry_interval_s=retry_interval or 0,
            ),
        )

    @after(Action.get_diagnostics)
    def after_get_diagnostics(self, call_unique_id: str, **kwargs: Any) -> None:
        self._after(call_unique_id)

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

    @after(Action.update_firmware)
    def after_update_firmware(self, call_unique_id: str, **kwargs: Any) -> None:
        self._after(call_unique_id)

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
        if connector_id == 0 or connector_id not in station.connectors:
            # Connector 0 needs ReserveConnectorZeroSupported, which this charger reports as false.
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
        list_version: int,
        update_type: str,
        call_unique_id: str,
        local_authorization_list: list[dict[str, Any]] | None = None,
        **kwargs: Any,
    ) -> call_result.SendLocalList:
        station = self.station
        config = station.config
        entries = local_authorization_list or []
        if not config.boolean("LocalAuthListEnabled"):
            return self._answer(call_unique_id, call_result.SendLocalList(status="NotSupported"))
        if len(entries) > config.integer("SendLocalListMaxLength"):
            return self._answer(call_unique_id, call_result.SendLocalList(status="Failed"))
        if update_type == "Differential" and list_version <= station.auth.version:
            return self._answer(call_unique_id, call_result.SendLocalList(status="VersionMismatch"))
        updated = {} if update_type == "Full" else dict(station.auth.entries)
        for entry in entries:
            info = entry.get("id_tag_info")
            if info is None:
                updated.pop(entry["id_tag"], None)
            else:
                updated[entry["id_tag"]] = info
        if len(updated) > config.integer("LocalAuthListMaxLength"):
            return self._answer(call_unique_id, call_result.SendLocalList(status="Failed"))
        station.auth.entries, station.auth.version = updated, list_version
        for id_tag in updated:
            station.auth.cache.pop(id_tag, None)
        return self._answer(call_unique_id, call_result.SendLocalList(status="Accepted"))

    @on(Action.get_local_list_version)
    async def on_get_local_list_version(
        self, call_unique_id: str, **kwargs: Any
    ) -> call_result.GetLocalListVersion:
        auth = self.station.auth
        # 0 means "the list is empty" (-1 would mean "no local list support").
        return self._answer(
            call_unique_id, call_result.GetLocalListVersion(list_version=auth.version if auth.entries else 0)
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
        units = {"Current": "A", "Power": "W"}
        allowed_units = {
            units[item] for item in config.items("ChargingScheduleAllowedChargingRateUnit") if item in units
        }
        if (
            profile.stack_level > config.integer("ChargeProfileMaxStackLevel")
            or len(profile.periods) > config.integer("ChargingScheduleMaxPeriods")
            or profile.unit not in allowed_units
        ):
            return False
        if profile.purpose == CHARGE_POINT_MAX:
            return profile.connector_id == 0
        if profile.purpose == TX:
            # A TxProfile needs a running transaction on that connector (and names it, when it names one).
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

    @after(Action.clear_charging_profile)
    def after_clear_charging_profile(self, call_unique_id: str, **kwargs: Any) -> None:
        self._after(call_unique_id)

    @on(Action.get_composite_schedule)
    async def on_get_composite_schedule(
        self,
        connector_id: int,
        duration: int,
        call_unique_id: str,
        charging_rate_unit: str | None = None,
        **kwargs: Any,
    ) -> call_result.GetCompositeSchedule:
        station = self.station
        if not self._valid_connector(connector_id, allow_zero=True) or duration < 0:
            return self._answer(call_unique_id, call_result.GetCompositeSchedule(status="Rejected"))
        options = station.options
        unit = charging_rate_unit or "A"
        physical_a = options.max_power_w / (options.voltage_v * options.phases)
        if connector_id == 0:
            physical_a *= len(station.connectors)
            tx_start = None
        else:
            tx = station.connectors[connector_id].transaction
            tx_start = tx.started_at if tx is not None else None
        start = clock.now().replace(microsecond=0)
        periods = station.profiles.composite(
            connector_id,
            start,
            duration,
            unit=unit,
            physical_max_a=physical_a,
            transaction_start=tx_start,
            max_periods=station.config.integer("ChargingScheduleMaxPeriods"),
        )
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
