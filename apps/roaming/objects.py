"""Our data in OCPI 2.2.1 shape: Location / EVSE / Connector, Tariff, Session and CDR objects. Reads only;
what a party may see is chosen by the selectors and views, not here."""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime
from decimal import ROUND_HALF_UP, Decimal
from typing import Any

from django.conf import settings

from apps.charging.models import ChargingSession
from apps.roaming.countries import ALPHA3
from apps.roaming.models import RoamingSession, RoamingToken
from apps.roaming.protocol import format_datetime
from apps.stations.choices import Availability, ConnectorStatus
from apps.stations.models import ChargePoint, Connector, Evse, Location
from apps.tariffs import pricing
from apps.tariffs.models import ChargeDetailRecord
from apps.tariffs.pricing import ComponentSpec, TariffSpec

# OCPP connector status → OCPI EVSE Status.
EVSE_STATUS = {
    ConnectorStatus.AVAILABLE: "AVAILABLE",
    ConnectorStatus.PREPARING: "CHARGING",
    ConnectorStatus.CHARGING: "CHARGING",
    ConnectorStatus.SUSPENDED_EV: "CHARGING",
    ConnectorStatus.SUSPENDED_EVSE: "CHARGING",
    ConnectorStatus.FINISHING: "CHARGING",
    ConnectorStatus.OCCUPIED: "CHARGING",
    ConnectorStatus.RESERVED: "RESERVED",
    ConnectorStatus.UNAVAILABLE: "INOPERATIVE",
    ConnectorStatus.FAULTED: "OUTOFORDER",
    ConnectorStatus.UNKNOWN: "UNKNOWN",
}
# Which status wins when an EVSE has several connectors (the EVSE charges one car at a time).
_STATUS_RANK = ["CHARGING", "RESERVED", "AVAILABLE", "OUTOFORDER", "INOPERATIVE", "UNKNOWN"]
EVSE_CAPABILITIES = ["REMOTE_START_STOP_CAPABLE", "RESERVABLE", "RFID_READER", "UNLOCK_CAPABLE"]
_EMI3 = re.compile(r"^[A-Z]{2}\*?[A-Z0-9]{3}\*?E[A-Z0-9*]{1,30}$")


def our_identity() -> tuple[str, str]:
    """Our country code and party id (CPO_OCPI_COUNTRY_CODE, CPO_OCPI_PARTY_ID)."""
    return settings.CPO_OCPI_COUNTRY_CODE, settings.CPO_OCPI_PARTY_ID


def evse_uid(evse: Evse) -> str:
    """The EVSE's OCPI uid: its database id (never reused, never renamed, within CiString(36))."""
    return str(evse.pk)


def evse_emi3_id(evse: Evse) -> str:
    """The EVSE's eMI3 id: as the operator set it, else built from our identity and the EVSE's uid."""
    if evse.emi3_id and _EMI3.match(evse.emi3_id.upper()):
        return evse.emi3_id.upper()
    cc, pid = our_identity()
    return f"{cc}*{pid}*E{evse.pk}"


def _coordinate(value: float) -> str:
    """OCPI GeoLocation: string(10), 5 to 7 decimals (-122.12345 still fits)."""
    text = f"{value:.6f}"
    return text if len(text) <= 10 else f"{value:.5f}"


def evse_status(evse: Evse, charge_point: ChargePoint, connectors: Iterable[Connector]) -> str:
    if charge_point.availability == Availability.INOPERATIVE or evse.availability == Availability.INOPERATIVE:
        return "INOPERATIVE"
    statuses = [EVSE_STATUS.get(ConnectorStatus(c.status), "UNKNOWN") for c in connectors]
    if not statuses:
        return "UNKNOWN"
    return min(statuses, key=_STATUS_RANK.index)


def _latest(*values: datetime | None) -> datetime:
    return max(v for v in values if v is not None)


def connector_object(connector: Connector, *, tariff_ids: list[str], fallback: datetime) -> dict[str, Any]:
    body: dict[str, Any] = {
        "id": str(connector.connector_id),
        "standard": connector.standard,
        "format": connector.format,
        "power_type": connector.power_type,
        "max_voltage": connector.max_voltage_v,
        "max_amperage": connector.max_current_a,
        "max_electric_power": connector.max_power_w,
    }
    if tariff_ids:
        body["tariff_ids"] = tariff_ids
    body["last_updated"] = format_datetime(_latest(fallback, connector.status_received_at))
    return body


def evse_object(
    evse: Evse, charge_point: ChargePoint, *, tariff_ids: dict[int, list[str]], fallback: datetime
) -> dict[str, Any]:
    connectors = list(evse.connectors.all())
    fallback = _latest(fallback, charge_point.updated_at)
    objects = [
        connector_object(c, tariff_ids=tariff_ids.get(c.pk, []), fallback=fallback) for c in connectors
    ]
    return {
        "uid": evse_uid(evse),
        "evse_id": evse_emi3_id(evse),
        "status": evse_status(evse, charge_point, connectors),
        "capabilities": list(EVSE_CAPABILITIES),
        "connectors": objects,
        "last_updated": max([format_datetime(fallback), *(c["last_updated"] for c in objects)]),
    }


def location_object(location: Location, *, tariff_ids: dict[int, list[str]]) -> dict[str, Any]:
    """A Location with its EVSEs (charge points, EVSEs and connectors prefetched) and the tariff ids
    per connector pk."""
    cc, pid = our_identity()
    evses = [
        evse_object(evse, cp, tariff_ids=tariff_ids, fallback=location.updated_at)
        for cp in location.charge_points.all()
        for evse in cp.evses.all()
    ]
    body: dict[str, Any] = {
        "country_code": cc,
        "party_id": pid,
        "id": str(location.pk),
        "publish": bool(location.is_published),
        "name": location.name[:255],
        "address": location.address[:45],
        "city": location.city[:45],
    }
    if location.postal_code:
        body["postal_code"] = location.postal_code[:10]
    body.update(
        {
            "country": ALPHA3.get(location.country, location.country),
            "coordinates": {
                "latitude": _coordinate(location.point.y),
                "longitude": _coordinate(location.point.x),
            },
            "evses": evses,
            "operator": {"name": location.organisation.name[:100]},
            "time_zone": location.time_zone,
            "opening_times": location.opening_hours,
            "last_updated": max([format_datetime(location.updated_at), *(e["last_updated"] for e in evses)]),
        }
    )
    return body


# --- tariffs -----------------------------------------------------------------------------------------


def _number(value: Decimal) -> float | int:
    value = value.normalize()
    return int(value) if value == value.to_integral_value() else float(value)


def _price(net: Decimal, vat: Decimal | None, currency: str) -> dict[str, Any]:
    q = pricing.quantum(currency)
    body: dict[str, Any] = {"excl_vat": _number(net.quantize(q, rounding=ROUND_HALF_UP))}
    if vat is not None:
        body["incl_vat"] = _number(pricing.gross_of(net, vat).quantize(q, rounding=ROUND_HALF_UP))
    return body


def _component(kind: str, component: ComponentSpec) -> dict[str, Any]:
    return {
        "type": kind,
        "price": _number(component.price),
        "vat": _number(component.vat),
        # OCPI: the minimum billed amount in Wh / s; 1 = no rounding beyond the unit.
        "step_size": max(1, int(component.step_size)),
    }


def _restrictions(r: pricing.Restrictions) -> dict[str, Any]:
    out: dict[str, Any] = {}
    if r.start_time is not None:
        out["start_time"] = r.start_time.strftime("%H:%M")
    if r.end_time is not None:
        out["end_time"] = r.end_time.strftime("%H:%M")
    if r.start_date is not None:
        out["start_date"] = r.start_date.isoformat()
    if r.end_date is not None:
        out["end_date"] = r.end_date.isoformat()
    for name in ("min_kwh", "max_kwh", "min_current", "max_current", "min_power", "max_power"):
        value = getattr(r, name)
        if value is not None:
            out[name] = _number(value)
    if r.min_duration is not None:
        out["min_duration"] = int(r.min_duration)
    if r.max_duration is not None:
        out["max_duration"] = int(r.max_duration)
    if r.day_of_week:
        order = ["MONDAY", "TUESDAY", "WEDNESDAY", "THURSDAY", "FRIDAY", "SATURDAY", "SUNDAY"]
        out["day_of_week"] = sorted(r.day_of_week, key=order.index)
    if r.reservation:
        out["reservation"] = r.reservation
    return out


def tariff_object(
    spec: TariffSpec,
    *,
    tariff_id: str,
    last_updated: datetime,
    tariff_type: str = "",
    valid_from: datetime | None = None,
    valid_until: datetime | None = None,
) -> dict[str, Any]:
    """An OCPI Tariff from a tariff snapshot (tariffs.pricing.TariffSpec): what we publish and what a CDR
    carries (the tariff as frozen when its session started)."""
    cc, pid = our_identity()
    body: dict[str, Any] = {"country_code": cc, "party_id": pid, "id": tariff_id, "currency": spec.currency}
    if tariff_type:
        body["type"] = tariff_type
    if spec.alt_text:
        body["tariff_alt_text"] = [
            {"language": lang[:2], "text": text[:512]} for lang, text in sorted(spec.alt_text.items())
        ]
    elements = []
    for element in spec.elements:
        components = [
            _component(kind, c)
            for kind, c in (
                ("ENERGY", element.energy),
                ("FLAT", element.flat),
                ("TIME", element.time),
                ("PARKING_TIME", element.parking),
            )
            if c is not None
        ]
        item: dict[str, Any] = {"price_components": components}
        restrictions = _restrictions(element.restrictions)
        if restrictions:
            item["restrictions"] = restrictions
        elements.append(item)
    body["elements"] = elements
    if spec.min_price is not None:
        body["min_price"] = _price(spec.min_price, spec.vat, spec.currency)
    if spec.max_price is not None:
        body["max_price"] = _price(spec.max_price, spec.vat, spec.currency)
    if valid_from is not None:
        body["start_date_time"] = format_datetime(valid_from)
    if valid_until is not None:
        body["end_date_time"] = format_datetime(valid_until)
    body["last_updated"] = format_datetime(last_updated)
    return body


# --- sessions and CDRs ---------------------------------------------------------------------------------


def cdr_token(token: RoamingToken | None, uid: str) -> dict[str, Any]:
    if token is None:
        cc, pid = our_identity()
        return {"country_code": cc, "party_id": pid, "uid": uid, "type": "OTHER", "contract_id": uid}
    return {
        "country_code": token.country_code,
        "party_id": token.party_id,
        "uid": token.uid,
        "type": token.type,
        "contract_id": token.contract_id,
    }


@dataclass(frozen=True, slots=True)
class SessionFigures:
    """What a running or finished session used and cost so far (cost None: not priced)."""

    energy_wh: Decimal
    cost: pricing.PriceBreakdown | None


def _kwh(wh: Decimal | int) -> float | int:
    return _number((Decimal(wh) / 1000).quantize(Decimal("0.001")))


def _connector_id(session: ChargingSession) -> str:
    connector = session.connector
    return str(connector.connector_id) if connector is not None else "1"


def _evse_of(session: ChargingSession) -> Evse | None:
    return Evse.objects.filter(charge_point_id=session.charge_point_id, evse_id=session.evse_id).first()


def session_object(
    roaming: RoamingSession, *, figures: SessionFigures, status: str, now: datetime
) -> dict[str, Any]:
    session = roaming.session
    cc, pid = our_identity()
    evse = _evse_of(session)
    body: dict[str, Any] = {
        "country_code": cc,
        "party_id": pid,
        "id": roaming.ocpi_id,
        "start_date_time": format_datetime(session.started_at),
    }
    if session.stopped_at is not None:
        body["end_date_time"] = format_datetime(session.stopped_at)
    body.update(
        {
            "kwh": _kwh(figures.energy_wh),
            "cdr_token": cdr_token(roaming.token, session.id_tag),
            "auth_method": roaming.auth_method,
        }
    )
    if roaming.authorization_reference:
        body["authorization_reference"] = roaming.authorization_reference
    body.update(
        {
            "location_id": str(session.charge_point.location_id or ""),
            "evse_uid": evse_uid(evse) if evse is not None else str(session.evse_id),
            "connector_id": _connector_id(session),
            "currency": figures.cost.currency if figures.cost is not None else "EUR",
        }
    )
    if figures.cost is not None:
        q = pricing.quantum(figures.cost.currency)
        body["total_cost"] = {
            "excl_vat": _number(figures.cost.net.quantize(q, rounding=ROUND_HALF_UP)),
            "incl_vat": _number(figures.cost.gross.quantize(q, rounding=ROUND_HALF_UP)),
        }
    body["status"] = status
    body["last_updated"] = format_datetime(now)
    return body


def _hours(seconds: Decimal | int) -> float | int:
    return _number((Decimal(seconds) / 3600).quantize(Decimal("0.0001")))


def _charging_periods(cdr: ChargeDetailRecord, tariff_id: str) -> list[dict[str, Any]]:
    periods = cdr.breakdown.get("periods") or []
    out = []
    for period in periods:
        start = datetime.fromisoformat(period["start"])
        end = datetime.fromisoformat(period["end"])
        seconds = Decimal(max(0, int((end - start).total_seconds())))
        kind = "PARKING_TIME" if period.get("kind") == "PARKING" else "TIME"
        dimensions = [{"type": kind, "volume": _hours(seconds)}]
        if Decimal(str(period.get("energy_wh") or 0)) > 0:
            dimensions.insert(0, {"type": "ENERGY", "volume": _kwh(Decimal(str(period["energy_wh"])))})
        item: dict[str, Any] = {"start_date_time": format_datetime(start), "dimensions": dimensions}
        if tariff_id:
            item["tariff_id"] = tariff_id
        out.append(item)
    if not out:
        out.append(
            {
                "start_date_time": format_datetime(cdr.started_at),
                "dimensions": [
                    {"type": "ENERGY", "volume": _kwh(cdr.energy_wh)},
                    {"type": "TIME", "volume": _hours(cdr.charging_seconds)},
                ],
            }
        )
    return out


def cdr_id(cdr: ChargeDetailRecord) -> str:
    return (cdr.number or f"CDR-{cdr.pk}")[:39]


def _dimension_cost(cdr: ChargeDetailRecord, component: str) -> Decimal | None:
    lines = [line for line in cdr.breakdown.get("lines") or [] if line.get("component") == component]
    if not lines:
        return None
    return sum((Decimal(line["net_exact"]) for line in lines), Decimal(0))


def cdr_object(cdr: ChargeDetailRecord, roaming: RoamingSession) -> dict[str, Any]:
    """The OCPI CDR of an issued record (a credit record: `credit` true, negative amounts, and
    `credit_reference_id` the id of the CDR it cancels)."""
    session = roaming.session
    cc, pid = our_identity()
    cp = cdr.charge_point
    location = cp.location
    evse = Evse.objects.filter(charge_point=cp, evse_id=cdr.evse_id).first()
    connector = session.connector
    spec = TariffSpec.from_dict(cdr.tariff_spec)
    tariff_id = str(cdr.tariff_id) if cdr.tariff_id else f"CDR-{cdr.pk}"
    sign = Decimal(-1) if cdr.kind == "CREDIT" else Decimal(1)
    cdr_location: dict[str, Any] = {"id": str(location.pk) if location else str(cp.pk)}
    if location is not None:
        cdr_location |= {
            "name": location.name[:255],
            "address": location.address[:45],
            "city": location.city[:45],
        }
        if location.postal_code:
            cdr_location["postal_code"] = location.postal_code[:10]
        cdr_location |= {
            "country": ALPHA3.get(location.country, location.country),
            "coordinates": {
                "latitude": _coordinate(location.point.y),
                "longitude": _coordinate(location.point.x),
            },
        }
    cdr_location |= {
        "evse_uid": evse_uid(evse) if evse else str(cdr.evse_id),
        "evse_id": evse_emi3_id(evse) if evse else f"{cc}*{pid}*E{cp.pk}{cdr.evse_id}",
        "connector_id": _connector_id(session),
        "connector_standard": connector.standard if connector else "IEC_62196_T2",
        "connector_format": connector.format if connector else "SOCKET",
        "connector_power_type": connector.power_type if connector else "AC_3_PHASE",
    }
    q = pricing.quantum(cdr.currency)
    total_cost = {
        "excl_vat": _number(cdr.net.quantize(q, rounding=ROUND_HALF_UP)),
        "incl_vat": _number(cdr.gross.quantize(q, rounding=ROUND_HALF_UP)),
    }
    body: dict[str, Any] = {
        "country_code": cc,
        "party_id": pid,
        "id": cdr_id(cdr),
        "start_date_time": format_datetime(cdr.started_at),
        "end_date_time": format_datetime(cdr.ended_at),
        "session_id": roaming.ocpi_id,
        "cdr_token": cdr_token(roaming.token, session.id_tag),
        "auth_method": roaming.auth_method,
    }
    if roaming.authorization_reference:
        body["authorization_reference"] = roaming.authorization_reference
    body |= {
        "cdr_location": cdr_location,
        "currency": cdr.currency,
        "tariffs": [tariff_object(spec, tariff_id=tariff_id, last_updated=cdr.issued_at)],
        "charging_periods": _charging_periods(cdr, tariff_id),
        "total_cost": total_cost,
        "total_energy": _kwh(cdr.energy_wh),
        "total_time": _hours(cdr.charging_seconds + cdr.parking_seconds),
    }
    for key, component in (
        ("total_fixed_cost", "FLAT"),
        ("total_energy_cost", "ENERGY"),
        ("total_time_cost", "TIME"),
        ("total_parking_cost", "PARKING_TIME"),
    ):
        net = _dimension_cost(cdr, component)
        if net is not None:
            body[key] = {"excl_vat": _number((sign * net).quantize(q, rounding=ROUND_HALF_UP))}
    if cdr.parking_seconds:
        body["total_parking_time"] = _hours(cdr.parking_seconds)
    if cdr.kind == "CREDIT":
        body["credit"] = True
        body["credit_reference_id"] = cdr_id(cdr.credits) if cdr.credits else ""
    body["last_updated"] = format_datetime(cdr.issued_at)
    return body
