"""The OCPI 2.2.1 HTTP interface (CPO role): versions, credentials, locations / tariffs / sessions / CDRs
senders, tokens and commands receivers. Plain Django views: each one authenticates the credentials token
(`Authorization: Token <base64>`), echoes X-Request-ID and X-Correlation-ID, checks the routing headers,
calls a service or selector, and answers in the OCPI envelope with an OCPI status code.

An interface on top of every app (like the other apps' api packages): the commands view sends the charger
command through the gateway's command service.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from functools import wraps
from typing import Any
from urllib.parse import urlencode

from django.conf import settings
from django.db import transaction
from django.http import HttpRequest, JsonResponse
from django.views.decorators.csrf import csrf_exempt

from apps.ocpp_gateway.intents import payloads_for
from apps.ocpp_gateway.services import command_send
from apps.roaming import commands as remote_commands
from apps.roaming import credentials, selectors, tokens
from apps.roaming.choices import CommandType, PartyStatus, TokenType
from apps.roaming.models import Party
from apps.roaming.objects import cdr_object, location_object, our_identity, session_object, tariff_object
from apps.roaming.protocol import (
    CLIENT_ERROR,
    SERVER_ERROR,
    UNKNOWN_LOCATION,
    UNKNOWN_RECEIVER,
    OcpiError,
    envelope,
    new_request_id,
    parse_datetime,
    tokens_from_authorization,
)
from apps.roaming.sessions import session_figures
from apps.tariffs.selectors import tariff_spec_build, vat_rate_for
from cpo import clock
from cpo.exceptions import ApplicationError

logger = logging.getLogger(__name__)


@dataclass
class Reply:
    data: Any = None
    http_status: int = 200
    headers: dict[str, str] = field(default_factory=dict)
    message: str = ""


@dataclass(frozen=True)
class Caller:
    party: Party
    token: str
    token_a: bool


def _json_body(request: HttpRequest) -> Any:
    if not request.body:
        raise OcpiError("a JSON body is required")
    try:
        return json.loads(request.body)
    except ValueError as exc:
        raise OcpiError(f"the body is not JSON: {exc}") from exc


def _caller(request: HttpRequest) -> Caller | None:
    candidates = tokens_from_authorization(request.headers.get("Authorization", ""))
    for token in candidates:
        party, is_a = credentials.party_for_token([token])
        if party is not None:
            return Caller(party=party, token=token, token_a=is_a)
    return None


def _check_route(request: HttpRequest, party: Party) -> None:
    """OCPI-to-* must name us when given; OCPI-from-* must name the caller unless it is a hub."""
    to = (request.headers.get("OCPI-to-country-code", ""), request.headers.get("OCPI-to-party-id", ""))
    if any(to) and (to[0].upper(), to[1].upper()) != our_identity():
        raise OcpiError(f"unknown receiver {to[0]}*{to[1]}", status_code=UNKNOWN_RECEIVER, http_status=404)
    sender = (
        request.headers.get("OCPI-from-country-code", ""),
        request.headers.get("OCPI-from-party-id", ""),
    )
    is_hub = any(isinstance(r, dict) and r.get("role") == "HUB" for r in party.roles or [])
    if (
        any(sender)
        and not is_hub
        and (sender[0].upper(), sender[1].upper()) != (party.country_code, party.party_id)
    ):
        raise OcpiError(
            f"OCPI-from {sender[0]}*{sender[1]} is not you ({party.country_code}*{party.party_id})",
            http_status=403,
        )


def ocpi_view(*, configuration: bool = False, methods: tuple[str, ...] = ("GET",)) -> Callable:
    """Wrap an OCPI view. `configuration`: versions and credentials (token A works there, no routing
    headers); function modules need a registered party's token."""

    def decorate(view: Callable[..., Reply]) -> Callable[..., JsonResponse]:
        @csrf_exempt
        @wraps(view)
        def wrapper(request: HttpRequest, *args: Any, **kwargs: Any) -> JsonResponse:
            now = clock.now()
            headers = {
                "X-Request-ID": request.headers.get("X-Request-ID") or new_request_id(),
                "X-Correlation-ID": request.headers.get("X-Correlation-ID") or new_request_id(),
            }
            caller = _caller(request)
            if caller is None or (
                not configuration and (caller.token_a or caller.party.status != PartyStatus.REGISTERED)
            ):
                return _respond(
                    envelope(
                        status_code=CLIENT_ERROR, message="unknown or missing credentials token", at=now
                    ),
                    401,
                    headers,
                )
            if request.method not in methods:
                return _respond(
                    envelope(
                        status_code=CLIENT_ERROR, message=f"{request.method} is not allowed here", at=now
                    ),
                    405,
                    headers | {"Allow": ", ".join(methods)},
                )
            try:
                if not configuration:
                    _check_route(request, caller.party)
                    cc, pid = our_identity()
                    headers |= {
                        "OCPI-from-country-code": cc,
                        "OCPI-from-party-id": pid,
                        "OCPI-to-country-code": caller.party.country_code,
                        "OCPI-to-party-id": caller.party.party_id,
                    }
                reply = view(request, caller, *args, **kwargs)
            except OcpiError as exc:
                return _respond(
                    envelope(status_code=exc.status_code, message=exc.message, at=now),
                    exc.http_status,
                    headers,
                )
            except ApplicationError as exc:
                return _respond(envelope(status_code=CLIENT_ERROR, message=exc.detail, at=now), 400, headers)
            except Exception:
                logger.exception("OCPI %s %s failed", request.method, request.path)
                return _respond(
                    envelope(status_code=SERVER_ERROR, message="internal error", at=now), 500, headers
                )
            return _respond(
                envelope(reply.data, message=reply.message, at=now),
                reply.http_status,
                headers | reply.headers,
            )

        return wrapper

    return decorate


def _respond(body: dict[str, Any], status: int, headers: dict[str, str]) -> JsonResponse:
    response = JsonResponse(body, status=status, safe=False)
    for name, value in headers.items():
        response[name] = value
    return response


def _base(request: HttpRequest) -> str:
    return credentials.ocpi_base_url(request.build_absolute_uri("/"))


# --- versions and credentials --------------------------------------------------------------------------


@ocpi_view(configuration=True)
def versions(request: HttpRequest, caller: Caller) -> Reply:
    return Reply(credentials.versions_list(base_url=_base(request)))


@ocpi_view(configuration=True)
def version_details(request: HttpRequest, caller: Caller) -> Reply:
    return Reply(credentials.version_details(base_url=_base(request)))


@ocpi_view(configuration=True, methods=("GET", "POST", "PUT", "DELETE"))
def credentials_endpoint(request: HttpRequest, caller: Caller) -> Reply:
    party = caller.party
    registered = party.status == PartyStatus.REGISTERED and not caller.token_a
    if request.method == "GET":
        return Reply(credentials.our_credentials(token=caller.token, base_url=_base(request)))
    if request.method == "POST":
        if not caller.token_a:
            raise OcpiError(
                "already registered: use PUT to update", status_code=CLIENT_ERROR, http_status=405
            )
        return Reply(
            credentials.credentials_accept(party=party, data=_json_body(request), base_url=_base(request))
        )
    if not registered:
        raise OcpiError(
            "not registered: POST your credentials first", status_code=CLIENT_ERROR, http_status=405
        )
    if request.method == "PUT":
        return Reply(
            credentials.credentials_accept(
                party=party, data=_json_body(request), base_url=_base(request), update=True
            )
        )
    credentials.credentials_forget(party=party)
    return Reply()


# --- paginated lists -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Page:
    offset: int
    limit: int
    date_from: datetime | None
    date_to: datetime | None


def _int_param(request: HttpRequest, name: str, default: int) -> int:
    raw = request.GET.get(name)
    if raw is None or raw == "":
        return default
    if not raw.isdigit():
        raise OcpiError(f"{name}: a non-negative integer is required, not {raw!r}")
    return int(raw)


def _page(request: HttpRequest) -> Page:
    limit = min(_int_param(request, "limit", settings.CPO_OCPI_PAGE_LIMIT), settings.CPO_OCPI_PAGE_LIMIT)
    date_from = request.GET.get("date_from")
    date_to = request.GET.get("date_to")
    return Page(
        offset=_int_param(request, "offset", 0),
        limit=max(1, limit),
        date_from=parse_datetime(date_from, "date_from") if date_from else None,
        date_to=parse_datetime(date_to, "date_to") if date_to else None,
    )


def _paginated(request: HttpRequest, page: Page, qs: Any, render: Callable[[list[Any]], list[Any]]) -> Reply:
    total = qs.count()
    items = list(qs[page.offset : page.offset + page.limit])
    headers = {"X-Total-Count": str(total), "X-Limit": str(page.limit)}
    if page.offset + len(items) < total:
        params = {k: v for k, v in request.GET.items() if k not in ("offset", "limit")}
        params |= {"offset": str(page.offset + len(items)), "limit": str(page.limit)}
        url = request.build_absolute_uri(request.path) + "?" + urlencode(params)
        headers["Link"] = f'<{url}>; rel="next"'
    return Reply(render(items), headers=headers)


# --- locations -----------------------------------------------------------------------------------------


def _location(caller: Caller, location_id: str) -> dict[str, Any]:
    location = (
        selectors.location_qs_for(party=caller.party).filter(pk=int(location_id)).first()
        if location_id.isdigit()
        else None
    )
    if location is None:
        raise OcpiError(f"unknown location {location_id}", status_code=UNKNOWN_LOCATION, http_status=404)
    return location_object(location, tariff_ids=selectors.tariff_ids_for([location]))


@ocpi_view()
def locations(request: HttpRequest, caller: Caller) -> Reply:
    page = _page(request)
    qs = selectors.location_list_for(party=caller.party, date_from=page.date_from, date_to=page.date_to)

    def render(items: list[Any]) -> list[Any]:
        ids = selectors.tariff_ids_for(items)
        return [location_object(location, tariff_ids=ids) for location in items]

    return _paginated(request, page, qs, render)


@ocpi_view()
def location_detail(request: HttpRequest, caller: Caller, location_id: str) -> Reply:
    return Reply(_location(caller, location_id))


@ocpi_view()
def evse_detail(request: HttpRequest, caller: Caller, location_id: str, evse_uid: str) -> Reply:
    for evse in _location(caller, location_id)["evses"]:
        if evse["uid"] == evse_uid:
            return Reply(evse)
    raise OcpiError(f"unknown EVSE {evse_uid}", status_code=UNKNOWN_LOCATION, http_status=404)


@ocpi_view()
def connector_detail(
    request: HttpRequest, caller: Caller, location_id: str, evse_uid: str, connector_id: str
) -> Reply:
    for evse in _location(caller, location_id)["evses"]:
        if evse["uid"] == evse_uid:
            for connector in evse["connectors"]:
                if connector["id"] == connector_id:
                    return Reply(connector)
    raise OcpiError(f"unknown connector {connector_id}", status_code=UNKNOWN_LOCATION, http_status=404)


# --- tariffs, sessions, CDRs ---------------------------------------------------------------------------


@ocpi_view()
def tariffs(request: HttpRequest, caller: Caller) -> Reply:
    page = _page(request)
    qs = selectors.tariff_list_for(party=caller.party, date_from=page.date_from, date_to=page.date_to)
    org = caller.party.organisation
    vat = vat_rate_for(country=org.country, on=clock.now().date())

    def render(items: list[Any]) -> list[Any]:
        out = []
        for tariff in items:
            spec = tariff_spec_build(
                tariff=tariff, elements=list(tariff.elements.all()), time_zone=org.time_zone, vat=vat
            )
            out.append(
                tariff_object(
                    spec,
                    tariff_id=str(tariff.pk),
                    last_updated=tariff.updated_at,
                    tariff_type=tariff.tariff_type,
                    valid_from=tariff.valid_from,
                    valid_until=tariff.valid_until,
                )
            )
        return out

    return _paginated(request, page, qs, render)


@ocpi_view()
def sessions(request: HttpRequest, caller: Caller) -> Reply:
    page = _page(request)
    qs = selectors.session_list_for(party=caller.party, date_from=page.date_from, date_to=page.date_to)
    now = clock.now()

    def render(items: list[Any]) -> list[Any]:
        return [
            session_object(roaming, figures=session_figures(roaming.session), status=roaming.status, now=now)
            for roaming in items
        ]

    return _paginated(request, page, qs, render)


@ocpi_view()
def cdrs(request: HttpRequest, caller: Caller) -> Reply:
    page = _page(request)
    qs = selectors.cdr_list_for(party=caller.party, date_from=page.date_from, date_to=page.date_to)

    def render(items: list[Any]) -> list[Any]:
        return [cdr_object(cdr, cdr.session.roaming) for cdr in items]

    return _paginated(request, page, qs, render)


# --- tokens (receiver) ---------------------------------------------------------------------------------


def _token_type(request: HttpRequest) -> str:
    token_type = request.GET.get("type") or TokenType.RFID
    if token_type not in TokenType.values:
        raise OcpiError(f"type: one of {', '.join(TokenType.values)}")
    return token_type


@ocpi_view(methods=("GET", "PUT", "PATCH"))
def token_detail(request: HttpRequest, caller: Caller, country_code: str, party_id: str, uid: str) -> Reply:
    key = {
        "party": caller.party,
        "country_code": country_code,
        "party_id": party_id,
        "uid": uid,
        "token_type": _token_type(request),
    }
    if request.method == "GET":
        return Reply(tokens.token_get(**key).data)
    if request.method == "PUT":
        tokens.token_put(**key, data=_json_body(request))
        return Reply()
    tokens.token_patch(**key, data=_json_body(request))
    return Reply()


# --- commands (receiver) -------------------------------------------------------------------------------


def _command_response(result: str, message: str = "") -> Reply:
    data: dict[str, Any] = {"result": result, "timeout": settings.CPO_OCPI_COMMAND_TIMEOUT_S}
    if message:
        data["message"] = [{"language": "en", "text": message}]
    return Reply(data)


@ocpi_view(methods=("POST",))
def command(request: HttpRequest, caller: Caller, command_name: str) -> Reply:
    """Answer at once (ACCEPTED: the charger is being asked; the result follows at response_url)."""
    data = _json_body(request)
    if command_name in (CommandType.RESERVE_NOW, CommandType.CANCEL_RESERVATION):
        remote_commands.response_url_of(data)
        return _command_response("NOT_SUPPORTED", "reservations through OCPI are not offered")
    try:
        with transaction.atomic():
            remote, target = remote_commands.remote_command_record(
                party=caller.party, command=command_name, data=data
            )
            payloads = payloads_for(target.charge_point.ocpp_protocol)
            if command_name == CommandType.START_SESSION:
                assert remote.token is not None and target.evse_id is not None
                action, payload = payloads.start_charging(evse_id=target.evse_id, id_token=remote.token.uid)
            elif command_name == CommandType.STOP_SESSION:
                assert target.roaming is not None
                if not remote_commands.session_is_running(target.roaming):
                    raise OcpiError("the session has ended", http_status=200, status_code=CLIENT_ERROR)
                action, payload = payloads.stop_transaction(session=target.roaming.session)
            else:
                assert target.evse_id is not None
                action, payload = payloads.unlock_connector(
                    evse_id=target.evse_id, connector_id=target.connector_id or 1
                )
            sent = command_send(
                charge_point=target.charge_point,
                action=action,
                payload=payload,
                actor=None,
                source="ocpi",
                timeout_s=float(settings.CPO_OCPI_COMMAND_TIMEOUT_S),
            )
            remote_commands.remote_command_sent(
                remote=remote, command_id=sent.pk, offline=sent.status == "charger_offline"
            )
    except OcpiError as exc:
        if exc.http_status == 404 and command_name == CommandType.STOP_SESSION:
            return _command_response("UNKNOWN_SESSION", exc.message)
        if exc.status_code == CLIENT_ERROR:
            return _command_response("REJECTED", exc.message)
        raise
    if sent.status == "charger_offline":
        return _command_response("REJECTED", "the charger is offline")
    return _command_response("ACCEPTED")
