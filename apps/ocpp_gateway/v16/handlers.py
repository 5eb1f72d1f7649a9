"""OCPP 1.6J: the charger's requests, translated to the version-agnostic domain services."""

from __future__ import annotations

from typing import Any

from ocpp.routing import on
from ocpp.v16 import call_result
from ocpp.v16.enums import Action

from apps.charging import metering
from apps.charging.services import (
    AuthResult,
    idtoken_authorize,
    meter_values_record,
    session_start,
    session_stop,
)
from apps.ocpp_gateway.dbwork import db_batched, db_work
from apps.ocpp_gateway.handlers import HandlerBase, iso, roaming_prepare
from apps.stations.choices import OcppProtocol, RegistrationStatus
from apps.stations.models import ChargePoint
from apps.stations.services import (
    chargepoint_record_boot,
    chargepoint_record_diagnostics_status,
    chargepoint_record_firmware_status,
    connector_status_record,
)
from cpo import clock

KNOWN_ACTIONS = frozenset(a.value for a in Action)


def id_tag_info(auth: AuthResult) -> dict[str, Any]:
    info: dict[str, Any] = {"status": auth.status}
    if auth.group_id:
        info["parent_id_tag"] = auth.group_id
    if auth.expires_at is not None:
        info["expiry_date"] = iso(auth.expires_at)
    return info


def _authorize(*, uid: str, charge_point_id: int) -> AuthResult:
    return idtoken_authorize(uid=uid, charge_point=ChargePoint.objects.get(pk=charge_point_id))


class ChargePointHandlers(HandlerBase):
    @on(Action.boot_notification)
    async def on_boot_notification(
        self, charge_point_vendor: str, charge_point_model: str, **kwargs: Any
    ) -> call_result.BootNotification:
        status = await db_batched(chargepoint_record_boot)(
            charge_point_id=self.ctx.charge_point_id,
            protocol=OcppProtocol.OCPP16,
            received_at=clock.now(),
            vendor=charge_point_vendor,
            model=charge_point_model,
            serial_number=kwargs.get("charge_point_serial_number")
            or kwargs.get("charge_box_serial_number")
            or "",
            firmware_version=kwargs.get("firmware_version") or "",
            iccid=kwargs.get("iccid") or "",
            imsi=kwargs.get("imsi") or "",
            meter_type=kwargs.get("meter_type") or "",
            meter_serial_number=kwargs.get("meter_serial_number") or "",
        )
        self.ctx.registration_status = status
        # For Pending/Rejected the interval is the wait before the next BootNotification.
        interval = self.heartbeat_interval() if status == RegistrationStatus.ACCEPTED else 60
        return call_result.BootNotification(current_time=iso(clock.now()), interval=interval, status=status)

    @on(Action.heartbeat)
    async def on_heartbeat(self, **kwargs: Any) -> call_result.Heartbeat:
        return call_result.Heartbeat(current_time=iso(clock.now()))

    @on(Action.authorize)
    async def on_authorize(self, id_tag: str, **kwargs: Any) -> call_result.Authorize:
        await roaming_prepare(uid=id_tag, charge_point_id=self.ctx.charge_point_id)
        auth = await db_work(_authorize)(uid=id_tag, charge_point_id=self.ctx.charge_point_id)
        return call_result.Authorize(id_tag_info=id_tag_info(auth))

    @on(Action.start_transaction)
    async def on_start_transaction(
        self,
        connector_id: int,
        id_tag: str,
        meter_start: int,
        timestamp: str,
        reservation_id: int | None = None,
        **kwargs: Any,
    ) -> call_result.StartTransaction:
        if connector_id < 1:
            raise self.violation("connectorId: a transaction starts on connector 1 or higher")
        result = await db_work(session_start)(
            charge_point_id=self.ctx.charge_point_id,
            evse_id=connector_id,
            id_tag=id_tag,
            meter_start_wh=meter_start,
            started_at_charger=self.parse_time(timestamp, "timestamp"),
            received_at=clock.now(),
            protocol=OcppProtocol.OCPP16,
            reservation_id=reservation_id,
        )
        return call_result.StartTransaction(
            transaction_id=result.session.ocpp16_transaction_id, id_tag_info=id_tag_info(result.auth)
        )

    @on(Action.stop_transaction)
    async def on_stop_transaction(
        self,
        meter_stop: int,
        timestamp: str,
        transaction_id: int,
        reason: str | None = None,
        id_tag: str | None = None,
        transaction_data: list[dict[str, Any]] | None = None,
        **kwargs: Any,
    ) -> call_result.StopTransaction:
        samples = self.samples(transaction_data or [])
        result = await db_work(session_stop)(
            charge_point_id=self.ctx.charge_point_id,
            transaction_ref=str(transaction_id),
            meter_stop_wh=meter_stop,
            stopped_at_charger=self.parse_time(timestamp, "timestamp"),
            received_at=clock.now(),
            reason=reason or "Local",
            id_tag=id_tag or "",
            samples=samples,
            raw={
                "meterStop": meter_stop,
                "timestamp": timestamp,
                "transactionId": transaction_id,
                "reason": reason,
                "idTag": id_tag,
            },
        )
        if result.auth is None:
            return call_result.StopTransaction()
        return call_result.StopTransaction(id_tag_info=id_tag_info(result.auth))

    @on(Action.meter_values)
    async def on_meter_values(
        self,
        connector_id: int,
        meter_value: list[dict[str, Any]],
        transaction_id: int | None = None,
        **kwargs: Any,
    ) -> call_result.MeterValues:
        samples = self.samples(meter_value)
        await db_batched(meter_values_record)(
            charge_point_id=self.ctx.charge_point_id,
            evse_id=connector_id,
            transaction_ref=str(transaction_id) if transaction_id is not None else None,
            samples=samples,
            received_at=clock.now(),
        )
        return call_result.MeterValues()

    @on(Action.status_notification)
    async def on_status_notification(
        self,
        connector_id: int,
        error_code: str,
        status: str,
        timestamp: str | None = None,
        info: str | None = None,
        vendor_error_code: str | None = None,
        **kwargs: Any,
    ) -> call_result.StatusNotification:
        await db_batched(connector_status_record)(
            charge_point_id=self.ctx.charge_point_id,
            evse_id=connector_id,
            connector_id=1,
            status=status,
            received_at=clock.now(),
            charger_at=self.parse_time(timestamp, "timestamp") if timestamp else None,
            error_code=error_code if error_code != "NoError" else "",
            info=" ".join(filter(None, [info, vendor_error_code])),
        )
        return call_result.StatusNotification()

    @on(Action.data_transfer)
    async def on_data_transfer(self, vendor_id: str, **kwargs: Any) -> call_result.DataTransfer:
        # No vendor extensions are installed; the specification's answer for that is UnknownVendorId.
        return call_result.DataTransfer(status="UnknownVendorId")

    @on(Action.diagnostics_status_notification)
    async def on_diagnostics_status_notification(
        self, status: str, **kwargs: Any
    ) -> call_result.DiagnosticsStatusNotification:
        await db_work(chargepoint_record_diagnostics_status)(
            charge_point_id=self.ctx.charge_point_id, status=status, received_at=clock.now()
        )
        return call_result.DiagnosticsStatusNotification()

    @on(Action.firmware_status_notification)
    async def on_firmware_status_notification(
        self, status: str, **kwargs: Any
    ) -> call_result.FirmwareStatusNotification:
        await db_work(chargepoint_record_firmware_status)(
            charge_point_id=self.ctx.charge_point_id, status=status, received_at=clock.now()
        )
        return call_result.FirmwareStatusNotification()

    # --- translation helpers -----------------------------------------------------------------------
    def samples(self, meter_values: list[dict[str, Any]]) -> list[metering.Sample]:
        out: list[metering.Sample] = []
        for mv in meter_values:
            at = self.parse_time(mv["timestamp"], "meterValue.timestamp")
            for sv in mv.get("sampled_value", []):
                try:
                    out.append(
                        metering.normalise(
                            sampled_at=at,
                            value=sv.get("value"),
                            measurand=sv.get("measurand"),
                            unit=sv.get("unit"),
                            phase=sv.get("phase"),
                            location=sv.get("location"),
                            context=sv.get("context"),
                            signed=sv.get("format") == "SignedData",
                        )
                    )
                except ValueError as exc:
                    raise self.violation(f"sampledValue.value: {exc}") from exc
        return out
