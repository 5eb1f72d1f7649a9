"""OCPP 2.0.1: the charger's requests, translated to the same version-agnostic domain services as 1.6.
OCPP 2.1 (`v21/handlers.py`) reuses these handlers."""

from __future__ import annotations

from typing import Any

from django.utils import translation
from ocpp.charge_point import snake_to_camel_case
from ocpp.routing import on
from ocpp.v201 import call_result
from ocpp.v201.enums import Action

from apps.charging import metering
from apps.charging.services import (
    AuthResult,
    idtoken_authorize,
    meter_values_record,
    transaction_event_record,
)
from apps.ocpp_gateway.dbwork import db_batched, db_work
from apps.ocpp_gateway.handlers import HandlerBase, iso, roaming_prepare
from apps.ocpp_gateway.masking import mask_payload
from apps.reservations.services import reservation_status_update
from apps.smartcharging.reports import (
    charging_profiles_report,
    ev_charging_needs_record,
    external_limit_clear,
    external_limit_record,
)
from apps.stations.choices import RegistrationStatus
from apps.stations.models import ChargePoint
from apps.stations.services import (
    chargepoint_record_boot,
    chargepoint_record_diagnostics_status,
    chargepoint_record_firmware_status,
    charger_events_record,
    connector_status_record,
    device_model_record,
)
from apps.tariffs.selectors import session_price_text, session_total_gross
from cpo import clock

KNOWN_ACTIONS = frozenset(a.value for a in Action)


def id_token_info(auth: AuthResult) -> dict[str, Any]:
    """2.0.1 idTokenInfo. The group is answered as groupIdToken (type Central: our own identifier)."""
    info: dict[str, Any] = {"status": auth.status or "Unknown"}
    if auth.group_id:
        info["group_id_token"] = {"id_token": auth.group_id, "type": "Central"}
    if auth.expires_at is not None:
        info["cache_expiry_date_time"] = iso(auth.expires_at)
    return info


def _authorize(*, uid: str, charge_point_id: int, token_type: str | None = None) -> AuthResult:
    return idtoken_authorize(
        uid=uid, charge_point=ChargePoint.objects.get(pk=charge_point_id), token_type=token_type
    )


def _charger_display(*, session: Any, ended: bool) -> dict[str, Any]:
    """What the charger shows the driver (TransactionEventResponse): the prices the transaction runs at
    when it starts (updatedPersonalMessage), its total cost with VAT when it ends (totalCost, which the
    specification allows only then). Nothing for a session without a tariff."""
    if ended:
        total = session_total_gross(session=session)
        return {} if total is None else {"total_cost": float(total)}
    text = session_price_text(session=session)
    if not text:
        return {}
    return {
        "updated_personal_message": {
            "format": "UTF8",
            "language": translation.get_language() or "en",
            "content": text,
        }
    }


class ChargingStationHandlers(HandlerBase):
    @on(Action.boot_notification)
    async def on_boot_notification(
        self, charging_station: dict[str, Any], reason: str, **kwargs: Any
    ) -> call_result.BootNotification:
        modem = charging_station.get("modem") or {}
        status = await db_batched(chargepoint_record_boot)(
            charge_point_id=self.ctx.charge_point_id,
            protocol=self.ctx.subprotocol,
            received_at=clock.now(),
            vendor=charging_station.get("vendor_name", ""),
            model=charging_station.get("model", ""),
            serial_number=charging_station.get("serial_number") or "",
            firmware_version=charging_station.get("firmware_version") or "",
            iccid=modem.get("iccid") or "",
            imsi=modem.get("imsi") or "",
        )
        self.ctx.registration_status = status
        interval = self.heartbeat_interval() if status == RegistrationStatus.ACCEPTED else 60
        return call_result.BootNotification(current_time=iso(clock.now()), interval=interval, status=status)

    @on(Action.heartbeat)
    async def on_heartbeat(self, **kwargs: Any) -> call_result.Heartbeat:
        return call_result.Heartbeat(current_time=iso(clock.now()))

    @on(Action.status_notification)
    async def on_status_notification(
        self, timestamp: str, connector_status: str, evse_id: int, connector_id: int, **kwargs: Any
    ) -> call_result.StatusNotification:
        await db_batched(connector_status_record)(
            charge_point_id=self.ctx.charge_point_id,
            evse_id=evse_id,
            connector_id=connector_id,
            status=connector_status,
            received_at=clock.now(),
            charger_at=self.parse_time(timestamp, "timestamp"),
        )
        return call_result.StatusNotification()

    @on(Action.authorize)
    async def on_authorize(self, id_token: dict[str, Any], **kwargs: Any) -> call_result.Authorize:
        await roaming_prepare(uid=id_token["id_token"], charge_point_id=self.ctx.charge_point_id)
        auth = await db_work(_authorize)(
            uid=id_token["id_token"],
            charge_point_id=self.ctx.charge_point_id,
            token_type=id_token.get("type"),
        )
        return call_result.Authorize(id_token_info=id_token_info(auth))

    @on(Action.transaction_event)
    async def on_transaction_event(
        self,
        event_type: str,
        timestamp: str,
        trigger_reason: str,
        seq_no: int,
        transaction_info: dict[str, Any],
        **kwargs: Any,
    ) -> call_result.TransactionEvent:
        evse = kwargs.get("evse") or {}
        id_token = kwargs.get("id_token") or {}
        # NoAuthorization tokens carry no identity: treat them as "no token" (free vend / plug and charge).
        uid = id_token.get("id_token", "") if id_token.get("type") != "NoAuthorization" else ""
        result = await db_work(transaction_event_record)(
            charge_point_id=self.ctx.charge_point_id,
            protocol=self.ctx.subprotocol,
            transaction_ref=transaction_info["transaction_id"],
            seq_no=seq_no,
            event_type=event_type,
            trigger_reason=trigger_reason,
            timestamp=self.parse_time(timestamp, "timestamp"),
            received_at=clock.now(),
            evse_id=evse.get("id"),
            connector_id=evse.get("connector_id"),
            id_tag=uid,
            charging_state=transaction_info.get("charging_state") or "",
            stopped_reason=transaction_info.get("stopped_reason") or "",
            remote_start_id=transaction_info.get("remote_start_id"),
            reservation_id=kwargs.get("reservation_id"),
            offline=bool(kwargs.get("offline", False)),
            samples=self.samples(kwargs.get("meter_value") or []),
            payload={
                "eventType": event_type,
                "seqNo": seq_no,
                "timestamp": timestamp,
                "triggerReason": trigger_reason,
            },
        )
        answer: dict[str, Any] = {}
        if result.auth is not None:
            answer["id_token_info"] = id_token_info(result.auth)
        if not result.duplicate and event_type in ("Started", "Ended"):
            answer.update(
                await db_work(_charger_display)(session=result.session, ended=event_type == "Ended")
            )
        return call_result.TransactionEvent(**answer)

    @on(Action.meter_values)
    async def on_meter_values(
        self, evse_id: int, meter_value: list[dict[str, Any]], **kwargs: Any
    ) -> call_result.MeterValues:
        await db_batched(meter_values_record)(
            charge_point_id=self.ctx.charge_point_id,
            evse_id=evse_id,
            transaction_ref=None,
            samples=self.samples(meter_value),
            received_at=clock.now(),
        )
        return call_result.MeterValues()

    @on(Action.notify_report)
    async def on_notify_report(
        self, request_id: int, generated_at: str, seq_no: int, **kwargs: Any
    ) -> call_result.NotifyReport:
        await db_work(device_model_record)(
            # A charger key it reports (SecurityCtrlr.BasicAuthPassword) is kept masked in the device model.
            charge_point_id=self.ctx.charge_point_id,
            report_data=mask_payload(kwargs.get("report_data") or []),
            reported_at=self.parse_time(generated_at, "generatedAt"),
        )
        return call_result.NotifyReport()

    @on(Action.notify_event)
    async def on_notify_event(
        self, generated_at: str, seq_no: int, event_data: list[dict[str, Any]], **kwargs: Any
    ) -> call_result.NotifyEvent:
        events = [
            {
                "event_id": e["event_id"],
                "occurred_at": self.parse_time(e["timestamp"], "eventData.timestamp"),
                "trigger": e["trigger"],
                "component": (e.get("component") or {}).get("name", ""),
                "variable": (e.get("variable") or {}).get("name", ""),
                "actual_value": e.get("actual_value", ""),
                "tech_info": e.get("tech_info") or e.get("tech_code") or "",
                "payload": e,
            }
            for e in mask_payload(event_data)
        ]
        await db_work(charger_events_record)(
            charge_point_id=self.ctx.charge_point_id, kind="event", events=events, received_at=clock.now()
        )
        return call_result.NotifyEvent()

    @on(Action.security_event_notification)
    async def on_security_event_notification(
        self, type: str, timestamp: str, **kwargs: Any
    ) -> call_result.SecurityEventNotification:
        event = {
            "occurred_at": self.parse_time(timestamp, "timestamp"),
            "trigger": type,
            "tech_info": kwargs.get("tech_info") or "",
            "payload": {"type": type, "timestamp": timestamp},
        }
        await db_work(charger_events_record)(
            charge_point_id=self.ctx.charge_point_id, kind="security", events=[event], received_at=clock.now()
        )
        return call_result.SecurityEventNotification()

    @on(Action.reservation_status_update)
    async def on_reservation_status_update(
        self, reservation_id: int, reservation_update_status: str, **kwargs: Any
    ) -> call_result.ReservationStatusUpdate:
        """The charger ended a reservation itself (Expired, or Removed): our record follows."""
        await db_work(reservation_status_update)(
            charge_point_id=self.ctx.charge_point_id,
            reservation_id=reservation_id,
            status=reservation_update_status,
            at=clock.now(),
        )
        return call_result.ReservationStatusUpdate()

    @on(Action.firmware_status_notification)
    async def on_firmware_status_notification(
        self, status: str, **kwargs: Any
    ) -> call_result.FirmwareStatusNotification:
        await db_work(chargepoint_record_firmware_status)(
            charge_point_id=self.ctx.charge_point_id, status=status, received_at=clock.now()
        )
        return call_result.FirmwareStatusNotification()

    @on(Action.log_status_notification)
    async def on_log_status_notification(
        self, status: str, **kwargs: Any
    ) -> call_result.LogStatusNotification:
        await db_work(chargepoint_record_diagnostics_status)(
            charge_point_id=self.ctx.charge_point_id, status=status, received_at=clock.now()
        )
        return call_result.LogStatusNotification()

    @on(Action.notify_customer_information)
    async def on_notify_customer_information(
        self, data: str, seq_no: int, generated_at: str, request_id: int, **kwargs: Any
    ) -> call_result.NotifyCustomerInformation:
        """A part of the report a CustomerInformation command asked for. Customer data is personal: it
        stays in the message log (with its retention), where operators read it, and is copied nowhere."""
        self.parse_time(generated_at, "generatedAt")
        return call_result.NotifyCustomerInformation()

    @on(Action.report_charging_profiles)
    async def on_report_charging_profiles(
        self,
        request_id: int,
        charging_limit_source: str,
        evse_id: int,
        charging_profile: list[dict[str, Any]],
        **kwargs: Any,
    ) -> call_result.ReportChargingProfiles:
        """The answer to a GetChargingProfiles (one part of it when tbc): smart charging keeps the profiles
        the charger holds on that EVSE."""
        await db_work(charging_profiles_report)(
            charge_point_id=self.ctx.charge_point_id,
            request_id=request_id,
            source=charging_limit_source,
            evse_id=evse_id,
            profiles=snake_to_camel_case(charging_profile),
            reported_at=clock.now(),
        )
        return call_result.ReportChargingProfiles()

    @on(Action.notify_charging_limit)
    async def on_notify_charging_limit(
        self, charging_limit: dict[str, Any], **kwargs: Any
    ) -> call_result.NotifyChargingLimit:
        """Someone else (an EMS, the grid operator) limits the charger: that charger's share follows."""
        await db_work(external_limit_record)(
            charge_point_id=self.ctx.charge_point_id,
            evse_id=kwargs.get("evse_id") or 0,
            source=charging_limit["charging_limit_source"],
            is_grid_critical=charging_limit.get("is_grid_critical"),
            schedules=snake_to_camel_case(kwargs.get("charging_schedule") or []),
            reported_at=clock.now(),
        )
        return call_result.NotifyChargingLimit()

    @on(Action.cleared_charging_limit)
    async def on_cleared_charging_limit(
        self, charging_limit_source: str, **kwargs: Any
    ) -> call_result.ClearedChargingLimit:
        await db_work(external_limit_clear)(
            charge_point_id=self.ctx.charge_point_id,
            source=charging_limit_source,
            evse_id=kwargs.get("evse_id"),
        )
        return call_result.ClearedChargingLimit()

    @on(Action.notify_ev_charging_needs)
    async def on_notify_ev_charging_needs(
        self, evse_id: int, charging_needs: dict[str, Any], **kwargs: Any
    ) -> call_result.NotifyEVChargingNeeds:
        """The car's needs (ISO 15118) set its priority at the site. Accepted: the schedule follows as our
        TxProfile when the site is rebalanced."""
        await db_work(ev_charging_needs_record)(
            charge_point_id=self.ctx.charge_point_id,
            evse_id=evse_id,
            needs=snake_to_camel_case(charging_needs),
            reported_at=clock.now(),
        )
        return call_result.NotifyEVChargingNeeds(status="Accepted")

    @on(Action.data_transfer)
    async def on_data_transfer(self, vendor_id: str, **kwargs: Any) -> call_result.DataTransfer:
        return call_result.DataTransfer(status="UnknownVendorId")

    # --- translation helpers -----------------------------------------------------------------------
    def samples(self, meter_values: list[dict[str, Any]]) -> list[metering.Sample]:
        out: list[metering.Sample] = []
        for mv in meter_values:
            at = self.parse_time(mv["timestamp"], "meterValue.timestamp")
            for sv in mv.get("sampled_value", []):
                unit = sv.get("unit_of_measure") or {}
                signed = sv.get("signed_meter_value") or {}
                try:
                    out.append(
                        metering.normalise(
                            sampled_at=at,
                            value=sv.get("value"),
                            measurand=sv.get("measurand"),
                            unit=unit.get("unit"),
                            multiplier=int(unit.get("multiplier") or 0),
                            phase=sv.get("phase"),
                            location=sv.get("location"),
                            context=sv.get("context"),
                            signed_data=signed.get("signed_meter_data", ""),
                        )
                    )
                except ValueError as exc:
                    raise self.violation(f"sampledValue.value: {exc}") from exc
        return out
