"""Authorising an eMSP's token at our chargers (charging.hooks.roaming_authorizer, provided in
RoamingConfig.ready()).

The token's whitelist type decides (mod_tokens, WhitelistType):
- ALWAYS, ALLOWED: the stored token decides (valid → Accepted, not valid → Blocked); no real-time call.
- ALLOWED_OFFLINE: the eMSP is asked in real time (POST {tokens}/{uid}/authorize); only when it cannot be
  reached does the stored token decide, and only with CPO_OCPI_REALTIME_FALLBACK = "WHITELIST".
- NEVER: the eMSP is asked in real time; unreachable → Invalid.
The real-time call is made before the Authorize reaches the database thread the charger messages of a
process share (`prepare`, called by the gateway in a thread of its own), so an eMSP that is slow delays
only the driver at that charger. It has a short timeout (CPO_OCPI_REALTIME_TIMEOUT_S); an eMSP that
failed to answer is not asked again for CPO_OCPI_REALTIME_BACKOFF_S (the fallback applies at once), so
a party that is down does not slow every tap. An answer is remembered for CPO_OCPI_REALTIME_CACHE_S for
the same token and charge point, so the StartTransaction after an Authorize does not ask again, and the
session learns the authorisation reference from it.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from django.conf import settings
from django.core.cache import cache

from apps.charging.choices import AuthorizationStatus, SessionStatus
from apps.charging.hooks import RoamingAuthorization, RoamingListToken
from apps.charging.models import ChargingSession
from apps.roaming.choices import PartyStatus, WhitelistType
from apps.roaming.client import OcpiRequestFailed, ocpi_request
from apps.roaming.models import RoamingToken
from apps.roaming.objects import evse_uid, our_identity
from apps.stations.models import ChargePoint, Evse

logger = logging.getLogger(__name__)

# OCPI AllowedType → what the charger is told.
ALLOWED_TO_STATUS = {
    "ALLOWED": AuthorizationStatus.ACCEPTED,
    "BLOCKED": AuthorizationStatus.BLOCKED,
    "EXPIRED": AuthorizationStatus.EXPIRED,
    "NO_CREDIT": AuthorizationStatus.BLOCKED,
    "NOT_ALLOWED": AuthorizationStatus.INVALID,
}
_TYPE_ORDER = ["RFID", "APP_USER", "AD_HOC_USER", "OTHER"]


@dataclass(frozen=True, slots=True)
class RealtimeAnswer:
    status: str
    authorization_reference: str


def _answer_key(token_id: int, charge_point_id: int) -> str:
    return f"roaming:rt:{token_id}:{charge_point_id}"


def _down_key(party_id: int) -> str:
    return f"roaming:down:{party_id}"


def tokens_for(*, uid: str, organisation_id: int) -> list[RoamingToken]:
    """The stored tokens with this uid (any case) of parties registered with this operator, RFID first."""
    tokens = list(
        RoamingToken.objects.filter(
            uid__iexact=uid, sender__organisation_id=organisation_id, sender__status=PartyStatus.REGISTERED
        ).select_related("sender")
    )
    return sorted(tokens, key=lambda t: _TYPE_ORDER.index(t.type) if t.type in _TYPE_ORDER else 9)


def realtime_answer(*, token_id: int, charge_point_id: int) -> RealtimeAnswer | None:
    """The real-time answer given for this token at this charge point a moment ago, if any."""
    value = cache.get(_answer_key(token_id, charge_point_id))
    return RealtimeAnswer(*value) if value else None


def _location_references(charge_point: ChargePoint) -> dict[str, Any] | None:
    if charge_point.location_id is None:
        return None
    uids = [evse_uid(e) for e in Evse.objects.filter(charge_point=charge_point)]
    body: dict[str, Any] = {"location_id": str(charge_point.location_id)}
    if uids:
        body["evse_uids"] = uids
    return body


def realtime_authorize(*, token: RoamingToken, charge_point: ChargePoint) -> RealtimeAnswer | None:
    """Ask the token's eMSP. None when it cannot be asked or did not answer usefully (then the fallback
    applies); the answer otherwise (an unknown token, OCPI 2004, is Invalid)."""
    party = token.sender
    url = party.endpoint("tokens", "SENDER")
    if not url or not party.realtime_authorization or not party.outgoing_token:
        return None
    cached = realtime_answer(token_id=token.pk, charge_point_id=charge_point.pk)
    if cached is not None:
        return cached
    if cache.get(_down_key(party.pk)):
        return None
    try:
        reply = ocpi_request(
            "POST",
            f"{url.rstrip('/')}/{token.uid}/authorize",
            token=party.outgoing_token,
            params={"type": token.type},
            body=_location_references(charge_point),
            route=(our_identity(), (token.country_code, token.party_id)),
            timeout_s=settings.CPO_OCPI_REALTIME_TIMEOUT_S,
        )
    except OcpiRequestFailed as exc:
        if exc.ocpi_status == 2004:
            return RealtimeAnswer(AuthorizationStatus.INVALID, "")
        logger.warning("roaming: real-time authorisation at %s failed: %s", party, exc)
        if not exc.reachable:
            cache.set(_down_key(party.pk), 1, settings.CPO_OCPI_REALTIME_BACKOFF_S)
        return None
    data = reply.data if isinstance(reply.data, dict) else {}
    status = ALLOWED_TO_STATUS.get(str(data.get("allowed")))
    if status is None:
        logger.warning("roaming: %s answered an authorisation without a known 'allowed': %r", party, data)
        return None
    answer = RealtimeAnswer(status, str(data.get("authorization_reference") or "")[:36])
    cache.set(
        _answer_key(token.pk, charge_point.pk),
        (answer.status, answer.authorization_reference),
        settings.CPO_OCPI_REALTIME_CACHE_S,
    )
    return answer


def _stored(token: RoamingToken) -> str:
    return AuthorizationStatus.ACCEPTED if token.valid else AuthorizationStatus.BLOCKED


def token_status(*, token: RoamingToken, charge_point: ChargePoint) -> str:
    """The status of a stored token at this charge point by its whitelist type (see the module)."""
    if token.whitelist in (WhitelistType.ALWAYS, WhitelistType.ALLOWED):
        return _stored(token)
    answer = realtime_authorize(token=token, charge_point=charge_point)
    if answer is not None:
        return answer.status
    if (
        token.whitelist == WhitelistType.ALLOWED_OFFLINE
        and settings.CPO_OCPI_REALTIME_FALLBACK == "WHITELIST"
    ):
        return _stored(token)
    return AuthorizationStatus.INVALID


class RoamingAuthorizer:
    """charging.hooks.RoamingAuthorizer over the tokens eMSPs pushed to us."""

    def local_list_tokens(self, *, organisation_id: int) -> list[RoamingListToken]:
        return [
            RoamingListToken(uid=t.uid.upper(), group_id=t.group_id, type=t.type)
            for t in whitelisted_tokens(organisation_id=organisation_id)
        ]

    def prepare(self, *, uid: str, charge_point_id: int) -> None:
        charge_point = ChargePoint.objects.filter(pk=charge_point_id).first()
        if charge_point is None:
            return
        tokens = tokens_for(uid=uid.strip(), organisation_id=charge_point.organisation_id)
        if tokens and tokens[0].whitelist in (WhitelistType.ALLOWED_OFFLINE, WhitelistType.NEVER):
            realtime_authorize(token=tokens[0], charge_point=charge_point)

    def authorize(
        self,
        *,
        uid: str,
        charge_point: ChargePoint,
        at: datetime,
        to_start: bool,
        exclude_session_id: int | None = None,
    ) -> RoamingAuthorization | None:
        tokens = tokens_for(uid=uid, organisation_id=charge_point.organisation_id)
        if not tokens:
            return None
        token = tokens[0]
        status = token_status(token=token, charge_point=charge_point)
        if (
            status == AuthorizationStatus.ACCEPTED
            and to_start
            and ChargingSession.objects.filter(
                id_tag=uid.upper(), id_token__isnull=True, status=SessionStatus.ACTIVE
            )
            .exclude(pk=exclude_session_id or 0)
            .exists()
        ):
            status = AuthorizationStatus.CONCURRENT_TX
        return RoamingAuthorization(status=status, group_id=token.group_id)


def whitelisted_tokens(*, organisation_id: int) -> list[RoamingToken]:
    """The stored tokens of parties registered with this operator that may be whitelisted in chargers'
    local lists: valid, whitelist ALWAYS or ALLOWED (ALLOWED_OFFLINE and NEVER need the eMSP asked)."""
    return list(
        RoamingToken.objects.filter(
            sender__organisation_id=organisation_id,
            sender__status=PartyStatus.REGISTERED,
            valid=True,
            whitelist__in=[WhitelistType.ALWAYS, WhitelistType.ALLOWED],
        ).order_by("uid", "pk")
    )
