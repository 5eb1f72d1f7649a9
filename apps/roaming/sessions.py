"""Roaming sessions, CDRs and EVSE status, pushed to the parties' receivers (Sessions, CDRs and Locations
modules, CPO as sender). Wired in RoamingConfig.ready():

- charging.hooks.session_started → `roaming_session_on_start`: a session authorised with an eMSP's token
  becomes a RoamingSession, PUT to the eMSP.
- charging.hooks.session_stopped → `roaming_session_on_stop`: PATCHed COMPLETED with its figures.
- charging.hooks.transaction_event_applied → `roaming_session_on_event`: the same for an OCPP 2.x transaction
  whose eMSP token was accepted after it started.
- `roaming_sessions_update` (Celery beat): running sessions PATCHed with their energy and cost so far.
- tariffs.hooks.cdr_issued → `roaming_cdr_on_issue`: every issued record of a roaming session (a CREDIT
  too) POSTed to the eMSP once.
- stations.hooks.connector_status_reported → `evse_status_on_report`: after commit, the EVSE's OCPI
  status PATCHed to every party with a locations receiver when it changed.
"""

from __future__ import annotations

import logging
from datetime import datetime, timedelta
from decimal import Decimal

from django.db import transaction

from apps.charging.choices import AuthorizationStatus
from apps.charging.models import ChargingSession
from apps.roaming import pushes
from apps.roaming.authorization import realtime_answer, tokens_for
from apps.roaming.choices import AuthMethod, CommandType, PartyStatus, SessionStatus
from apps.roaming.models import Party, Push, RemoteCommand, RoamingSession
from apps.roaming.objects import (
    SessionFigures,
    cdr_object,
    evse_status,
    evse_uid,
    our_identity,
    session_object,
)
from apps.roaming.protocol import format_datetime
from apps.stations.models import ChargePoint, Evse
from apps.tariffs.models import ChargeDetailRecord
from apps.tariffs.selectors import session_cost
from cpo import clock

logger = logging.getLogger(__name__)

COMMAND_MATCH_WINDOW = timedelta(minutes=10)


def session_figures(session: ChargingSession) -> SessionFigures:
    cost = session_cost(session=session)
    if cost is not None:
        return SessionFigures(energy_wh=Decimal(cost.energy_wh), cost=cost)
    stop = session.meter_stop_wh if session.meter_stop_wh is not None else session.meter_start_wh
    return SessionFigures(energy_wh=Decimal(max(0, stop - session.meter_start_wh)), cost=None)


def _session_url(party: Party, roaming: RoamingSession) -> str | None:
    url = party.endpoint("sessions", "RECEIVER")
    if not url:
        return None
    cc, pid = our_identity()
    return f"{url.rstrip('/')}/{cc}/{pid}/{roaming.ocpi_id}"


def _to(roaming: RoamingSession) -> tuple[str, str] | None:
    token = roaming.token
    return (token.country_code, token.party_id) if token is not None else None


def _push_session(roaming: RoamingSession, *, method: str, status: str, now: datetime) -> Push | None:
    url = _session_url(roaming.party, roaming)
    if url is None:
        return None
    body = session_object(roaming, figures=session_figures(roaming.session), status=status, now=now)
    if method == "PATCH":
        keep = {"kwh", "total_cost", "status", "end_date_time", "last_updated"}
        body = {k: v for k, v in body.items() if k in keep}
    return pushes.push_create(
        party=roaming.party,
        module="sessions",
        method=method,
        url=url,
        object_key=f"session:{roaming.ocpi_id}",
        body=body,
        to=_to(roaming),
    )


def roaming_session_on_start(
    *,
    session: ChargingSession,
    charge_point: ChargePoint,
    token_group_id: str,
    customer_account_id: int | None,
) -> None:
    """charging.hooks.session_started: a session accepted for an eMSP's token is a roaming session."""
    if session.id_token_id is not None or not session.id_tag:
        return
    if session.auth_status != AuthorizationStatus.ACCEPTED:
        return
    tokens = tokens_for(uid=session.id_tag, organisation_id=charge_point.organisation_id)
    if not tokens:
        return
    token = tokens[0]
    now = clock.now()
    method, reference = AuthMethod.WHITELIST, ""
    command = (
        RemoteCommand.objects.filter(
            command=CommandType.START_SESSION,
            token=token,
            charge_point=charge_point,
            created_at__gte=now - COMMAND_MATCH_WINDOW,
        )
        .order_by("-created_at")
        .first()
    )
    answer = realtime_answer(token_id=token.pk, charge_point_id=charge_point.pk)
    if command is not None:
        method = AuthMethod.COMMAND
        reference = str(command.request.get("authorization_reference") or "")[:36]
    elif answer is not None:
        method, reference = AuthMethod.AUTH_REQUEST, answer.authorization_reference
    roaming = RoamingSession.objects.create(
        session=session,
        party=token.sender,
        token=token,
        ocpi_id=str(session.pk),
        auth_method=method,
        authorization_reference=reference,
        status=SessionStatus.ACTIVE,
    )
    _push_session(roaming, method="PUT", status=SessionStatus.ACTIVE, now=now)


def roaming_session_on_stop(*, session: ChargingSession, reason: str) -> None:
    """charging.hooks.session_stopped: the roaming session is COMPLETED."""
    roaming = RoamingSession.objects.select_related("party", "token").filter(session=session).first()
    if roaming is None:
        return
    RoamingSession.objects.filter(pk=roaming.pk).update(status=SessionStatus.COMPLETED)
    roaming.session = session
    _push_session(roaming, method="PATCH", status=SessionStatus.COMPLETED, now=clock.now())


def roaming_sessions_update(*, now: datetime | None = None) -> int:
    """PATCH every running roaming session with its energy and cost so far (Celery beat)."""
    now = now or clock.now()
    count = 0
    for roaming in RoamingSession.objects.filter(status=SessionStatus.ACTIVE).select_related(
        "party", "token", "session", "session__charge_point", "session__connector"
    ):
        with transaction.atomic():
            if _push_session(roaming, method="PATCH", status=SessionStatus.ACTIVE, now=now) is not None:
                count += 1
    return count


def roaming_cdr_on_issue(*, cdr: ChargeDetailRecord) -> None:
    """tariffs.hooks.cdr_issued: POST the record of a roaming session to its eMSP, once."""
    roaming = (
        RoamingSession.objects.select_related("party", "token", "session", "session__connector")
        .filter(session_id=cdr.session_id)
        .first()
    )
    if roaming is None:
        return
    url = roaming.party.endpoint("cdrs", "RECEIVER")
    if not url:
        return
    pushes.push_create(
        party=roaming.party,
        module="cdrs",
        method="POST",
        url=url,
        object_key=f"cdr:{cdr.pk}",
        body=cdr_object(cdr, roaming),
        to=_to(roaming),
        once=True,
    )


def evse_status_on_report(*, charge_point_id: int, evse_id: int, status: str, at: datetime) -> None:
    """stations.hooks.connector_status_reported: after commit (when the status is stored), push the
    EVSE's status to the parties of its operator, if it has any registered."""
    organisation_id = ChargePoint.objects.filter(pk=charge_point_id).values_list("organisation_id", flat=True)
    if not Party.objects.filter(organisation_id__in=organisation_id, status=PartyStatus.REGISTERED).exists():
        return
    transaction.on_commit(
        lambda: evse_status_push(charge_point_id=charge_point_id, evse_id=evse_id), robust=True
    )


@transaction.atomic
def evse_status_push(*, charge_point_id: int, evse_id: int) -> int:
    """PATCH the EVSE's current OCPI status to each registered party with a locations receiver, unless the
    last status pushed to it is the same. Returns the number of pushes made."""
    evse = (
        Evse.objects.select_related("charge_point", "charge_point__location")
        .filter(charge_point_id=charge_point_id, evse_id=evse_id)
        .first()
    )
    if evse is None or evse.charge_point.location is None or not evse.charge_point.location.is_published:
        return 0
    cp = evse.charge_point
    status = evse_status(evse, cp, evse.connectors.all())
    cc, pid = our_identity()
    key = f"evse:{evse.pk}"
    made = 0
    for party in Party.objects.filter(organisation_id=cp.organisation_id, status=PartyStatus.REGISTERED):
        url = party.endpoint("locations", "RECEIVER")
        if not url:
            continue
        last = (
            Push.objects.filter(party=party, object_key=key)
            .order_by("-pk")
            .values_list("body", flat=True)
            .first()
        )
        if isinstance(last, dict) and last.get("status") == status:
            continue
        pushes.push_create(
            party=party,
            module="locations",
            method="PATCH",
            url=f"{url.rstrip('/')}/{cc}/{pid}/{cp.location_id}/{evse_uid(evse)}",
            object_key=key,
            body={"status": status, "last_updated": format_datetime(clock.now())},
        )
        made += 1
    return made


def roaming_session_on_event(
    *,
    session: ChargingSession,
    at: datetime,
    charging_state: str,
    previous_state: str,
    trigger_reason: str,
    stopped_reason: str,
) -> None:
    """charging.hooks.transaction_event_applied (OCPP 2.x): a transaction that started before its token
    was presented becomes a roaming session when an eMSP's token is accepted for it later."""
    if (
        session.id_token_id is not None
        or not session.id_tag
        or session.auth_status != AuthorizationStatus.ACCEPTED
    ):
        return
    if RoamingSession.objects.filter(session=session).exists():
        return
    roaming_session_on_start(
        session=session, charge_point=session.charge_point, token_group_id="", customer_account_id=None
    )
