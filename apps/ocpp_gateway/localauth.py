"""Local authorisation lists: which id tokens a group of chargers may authorise offline (OCPP 1.6
SendLocalList / GetLocalListVersion; 2.0.1 has the same pair with other field names: versionNumber,
idToken {idToken, type} and idTokenInfo). Each charger is sent the shape of the version it speaks.

The list's `version` grows by one with every change of its entries: tokens added or removed, and a
token's status, group or expiry changing (noticed by `local_list_refresh`, which runs before every
send). Each entry keeps the version that last changed it, and removed tokens stay as tombstones, so a
differential update for a charger that accepted version A holds exactly the entries changed after A.
Per charger, the version last sent and last accepted are kept (`LocalAuthListMember`); the accepted
version is forgotten whenever the charger's list may differ from it (a failed update, a version report
that does not match), which makes the next update a full one.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from django.db import transaction
from django.utils.translation import gettext as _

from apps.accounts.choices import IdTokenType
from apps.accounts.models import IdToken
from apps.charging.choices import AuthorizationStatus
from apps.charging.hooks import driver_standing, roaming_authorizer
from apps.ocpp_gateway import versions
from apps.ocpp_gateway.handlers import iso
from apps.ocpp_gateway.models import LocalAuthList, LocalAuthListEntry, LocalAuthListMember, OcppCommand
from apps.ocpp_gateway.services import command_send
from apps.stations.models import ChargePoint
from cpo import clock
from cpo.exceptions import Conflict, NotFound

FULL, DIFFERENTIAL = "Full", "Differential"
UPDATE_TYPES = (FULL, DIFFERENTIAL)
# OCPP 1.6 IdToken is CiString20: longer uids cannot be on a 1.6 charger's list.
V16_ID_TAG_MAX = 20


def _token_info(token: IdToken, local_list: LocalAuthList) -> dict[str, Any]:
    """What a charger should know about `token` now: status at the list's operator, group, expiry, and
    its type (2.0.1 names a token by uid and type)."""
    status = token.effective_status()
    if not token.is_valid_at(local_list.organisation_id):
        status = AuthorizationStatus.INVALID
    elif (
        status == AuthorizationStatus.ACCEPTED
        and token.owner_id is not None
        and driver_standing.get().blocked(user_id=token.owner_id)
    ):
        status = AuthorizationStatus.BLOCKED  # an unpaid debt, as Authorize answers it
    return {
        "status": str(status),
        # as Authorize answers it: no group to chargers where the card is not valid
        "group_id": (token.group_id or "") if status != AuthorizationStatus.INVALID else "",
        "expires_at": iso(token.expires_at) if token.expires_at else "",
        "type": str(token.type),
    }


# OCPI TokenType -> OCPP 2.0.1 IdTokenEnumType of a roaming token on a local list.
_ROAMING_TYPES = {"RFID": str(IdTokenType.ISO14443), "APP_USER": str(IdTokenType.CENTRAL)}


def _roaming_entries(local_list: LocalAuthList) -> dict[str, dict[str, Any]]:
    """The eMSPs' whitelisted tokens for a list that includes them (charging.hooks.roaming_authorizer),
    by uid, with what chargers are told: Accepted, their group, no expiry."""
    if not local_list.include_roaming:
        return {}
    return {
        token.uid: {
            "status": str(AuthorizationStatus.ACCEPTED),
            "group_id": token.group_id,
            "expires_at": "",
            "type": _ROAMING_TYPES.get(token.type, str(IdTokenType.CENTRAL)),
        }
        for token in roaming_authorizer.get().local_list_tokens(organisation_id=local_list.organisation_id)
    }


def _locked(local_list: LocalAuthList) -> LocalAuthList:
    return LocalAuthList.objects.select_for_update(no_key=True).get(pk=local_list.pk)


@transaction.atomic
def local_list_set_members(*, local_list: LocalAuthList, id_tokens: Iterable[IdToken]) -> LocalAuthList:
    """Make `id_tokens` the list's entries. Added tokens get entries, removed ones become tombstones and
    the version grows by one when anything changed (not at all when nothing did). A list that
    includes roaming tokens holds the eMSPs' whitelisted tokens too (our own token wins a shared uid)."""
    local_list = _locked(local_list)
    wanted = {
        token.uid: token
        for token in IdToken.objects.filter(pk__in=[t.pk for t in id_tokens]).prefetch_related("valid_at")
    }
    entries = {entry.id_tag: entry for entry in local_list.entries.all()}
    new_version = local_list.version + 1
    changed = False
    for uid, token in wanted.items():
        info = _token_info(token, local_list)
        entry = entries.get(uid)
        if entry is None:
            LocalAuthListEntry.objects.create(
                local_list=local_list, id_token=token, id_tag=uid, info=info, changed_version=new_version
            )
            changed = True
        elif entry.removed or entry.info != info or entry.id_token_id != token.pk:
            entry.id_token, entry.info, entry.removed, entry.changed_version = token, info, False, new_version
            entry.save(update_fields=["id_token", "info", "removed", "changed_version"])
            changed = True
    roaming = {uid: info for uid, info in _roaming_entries(local_list).items() if uid not in wanted}
    for uid, info in roaming.items():
        entry = entries.get(uid)
        if entry is None:
            LocalAuthListEntry.objects.create(
                local_list=local_list, id_token=None, id_tag=uid, info=info, changed_version=new_version
            )
            changed = True
        elif entry.removed or entry.info != info or entry.id_token_id is not None:
            entry.id_token, entry.info, entry.removed, entry.changed_version = None, info, False, new_version
            entry.save(update_fields=["id_token", "info", "removed", "changed_version"])
            changed = True
    for uid, entry in entries.items():
        if uid not in wanted and uid not in roaming and not entry.removed:
            entry.removed, entry.changed_version = True, new_version
            entry.save(update_fields=["removed", "changed_version"])
            changed = True
    if changed:
        local_list.version = new_version
        local_list.save(update_fields=["version", "updated_at"])
    return local_list


def local_list_refresh(*, local_list: LocalAuthList) -> LocalAuthList:
    """Bring the entries up to date with their tokens: status, group and expiry changes, a changed uid
    (old tag removed, new one added) and a deleted token (removed). The version grows by one when any
    entry changed."""
    tokens = IdToken.objects.filter(
        local_list_entries__local_list=local_list, local_list_entries__removed=False
    )
    return local_list_set_members(local_list=local_list, id_tokens=list(tokens))


def _v16_entry(entry: LocalAuthListEntry) -> dict[str, Any]:
    """An AuthorizationData element; without idTagInfo it tells the charger to delete the tag."""
    if entry.removed:
        return {"idTag": entry.id_tag}
    info: dict[str, Any] = {"status": entry.info.get("status", "Invalid")}
    group = entry.info.get("group_id") or ""
    if group and len(group) <= V16_ID_TAG_MAX:
        info["parentIdTag"] = group
    if entry.info.get("expires_at"):
        info["expiryDate"] = entry.info["expires_at"]
    return {"idTag": entry.id_tag, "idTagInfo": info}


def _v201_entry(entry: LocalAuthListEntry) -> dict[str, Any]:
    """A 2.0.1 AuthorizationData element; without idTokenInfo it tells the charger to delete the token.
    The group is sent as groupIdToken of type Central, as Authorize answers it."""
    id_token = {"idToken": entry.id_tag, "type": entry.info.get("type") or str(IdTokenType.ISO14443)}
    if entry.removed:
        return {"idToken": id_token}
    info: dict[str, Any] = {"status": entry.info.get("status", "Invalid")}
    if entry.info.get("group_id"):
        info["groupIdToken"] = {"idToken": entry.info["group_id"], "type": str(IdTokenType.CENTRAL)}
    if entry.info.get("expires_at"):
        info["cacheExpiryDateTime"] = entry.info["expires_at"]
    return {"idToken": id_token, "idTokenInfo": info}


@dataclass
class LocalListPayload:
    """A SendLocalList payload for one charger, with the entries that could not be included."""

    member: LocalAuthListMember
    update_type: str
    version: int
    payload: dict[str, Any]
    skipped: list[str] = field(default_factory=list)


def local_list_member_for(*, charge_point: ChargePoint) -> LocalAuthListMember:
    """The charger's membership. NotFound when it is on no local list."""
    member = (
        LocalAuthListMember.objects.select_related("local_list").filter(charge_point=charge_point).first()
    )
    if member is None:
        raise NotFound(
            _("{identity} is on no local authorisation list; add it to one first.").format(
                identity=charge_point.identity
            ),
            code="no_local_list",
        )
    return member


def local_list_payload(*, member: LocalAuthListMember, update_type: str) -> LocalListPayload:
    """The SendLocalList payload bringing `member`'s charger to the list's current version, in the shape
    of the OCPP version the charger speaks. A Full update holds every active entry; a Differential one
    the entries changed since the version the charger last accepted (Conflict when that version is
    unknown or not of this list's history). Run inside the transaction that sends it: the entries are
    refreshed first."""
    if update_type not in UPDATE_TYPES:
        raise Conflict(
            _("Unknown update type {value}.").format(value=update_type), code="invalid_update_type"
        )
    local_list = local_list_refresh(local_list=member.local_list)
    entries = local_list.entries.order_by("id_tag")
    if update_type == FULL:
        entries = entries.filter(removed=False)
    else:
        base = member.accepted_version
        if base is None or base > local_list.version:
            raise Conflict(
                _("{identity} has not accepted a known version of this list: send a full update.").format(
                    identity=member.charge_point.identity
                ),
                code="differential_impossible",
            )
        entries = entries.filter(changed_version__gt=base)
    skipped: list[str] = []
    payload: dict[str, Any]
    if versions.for_charge_point(member.charge_point).generation >= 2:
        items = [_v201_entry(entry) for entry in entries]
        # The 2.0.1 list has at least one element when present: an empty one is left out.
        payload = {"versionNumber": local_list.version, "updateType": update_type}
        if items:
            payload["localAuthorizationList"] = items
    else:
        items = []
        for entry in entries:
            if len(entry.id_tag) > V16_ID_TAG_MAX:
                skipped.append(entry.id_tag)
                continue
            items.append(_v16_entry(entry))
        payload = {
            "listVersion": local_list.version,
            "updateType": update_type,
            "localAuthorizationList": items,
        }
    return LocalListPayload(
        member=member, update_type=update_type, version=local_list.version, payload=payload, skipped=skipped
    )


def local_list_sent(*, prepared: LocalListPayload, command: OcppCommand) -> None:
    """Remember what was sent to the charger; the answer is recorded by `local_list_command_answered`."""
    member = prepared.member
    member.sent_version, member.sent_update_type = prepared.version, prepared.update_type
    member.sent_at, member.sent_command = command.created_at, command
    member.save(update_fields=["sent_version", "sent_update_type", "sent_at", "sent_command"])


@transaction.atomic
def local_list_send_to(
    *,
    member: LocalAuthListMember,
    update_type: str,
    actor: Any = None,
    source: str = "service",
    timeout_s: float | None = None,
) -> tuple[OcppCommand, list[str]]:
    """Send `member`'s charger its list (one SendLocalList command, no waiting for the answer), composed
    now (`local_list_payload`: Conflict for a Differential update without a known accepted version), and
    remember what was sent, in one transaction: a refused command leaves nothing behind. Returns the
    command and the tokens left out (too long for OCPP 1.6)."""
    prepared = local_list_payload(member=member, update_type=update_type)
    command = command_send(
        charge_point=member.charge_point,
        action="SendLocalList",
        payload=prepared.payload,
        timeout_s=timeout_s,
        actor=actor,
        source=source,
    )
    local_list_sent(prepared=prepared, command=command)
    return command, prepared.skipped


@dataclass(frozen=True, slots=True)
class SendResult:
    """What happened for one charger when a list was sent."""

    charge_point: ChargePoint
    update_type: str
    command: OcppCommand | None
    skipped: list[str]
    up_to_date: bool = False


def local_list_send(
    *,
    local_list: LocalAuthList,
    update_type: str,
    actor: Any = None,
    source: str = "service",
    timeout_s: float | None = None,
) -> list[SendResult]:
    """Send the list to each of its chargers (one SendLocalList command each; no waiting for answers).
    Differential falls back to Full for a charger whose accepted version is unknown, and is skipped for
    a charger that already has the current version."""
    results = []
    for member in local_list.members.select_related("charge_point", "local_list").order_by("pk"):
        with transaction.atomic():
            kind = update_type
            try:
                prepared = local_list_payload(member=member, update_type=kind)
            except Conflict:
                if kind != DIFFERENTIAL:
                    raise
                kind = FULL
                prepared = local_list_payload(member=member, update_type=kind)
            if (
                kind == DIFFERENTIAL
                and not prepared.payload.get("localAuthorizationList")
                and member.accepted_version == prepared.version
            ):
                results.append(SendResult(member.charge_point, kind, None, prepared.skipped, up_to_date=True))
                continue
            command = command_send(
                charge_point=member.charge_point,
                action="SendLocalList",
                payload=prepared.payload,
                timeout_s=timeout_s,
                actor=actor,
                source=source,
            )
            local_list_sent(prepared=prepared, command=command)
        results.append(SendResult(member.charge_point, kind, command, prepared.skipped))
    return results


def local_list_version_request(
    *, local_list: LocalAuthList, actor: Any = None, source: str = "service", timeout_s: float | None = None
) -> list[OcppCommand]:
    """Ask each charger of the list for its list version (GetLocalListVersion); answers are recorded on
    the membership as they arrive."""
    return [
        command_send(
            charge_point=member.charge_point,
            action="GetLocalListVersion",
            payload={},
            timeout_s=timeout_s,
            actor=actor,
            source=source,
        )
        for member in local_list.members.select_related("charge_point").order_by("pk")
    ]


def _list_version(payload: dict[str, Any] | None) -> int | None:
    payload = payload or {}
    value = payload.get("listVersion", payload.get("versionNumber"))
    return value if isinstance(value, int) else None


def local_list_command_answered(*, command: OcppCommand) -> None:
    """Record a charger's answer to SendLocalList or GetLocalListVersion on its membership. Only an
    update we composed from the list (the member's last sent command) may set the accepted version; any
    other accepted list, a failure, or a reported version that differs makes it unknown."""
    member = (
        LocalAuthListMember.objects.select_for_update(no_key=True)
        .filter(charge_point_id=command.charge_point_id)
        .first()
    )
    if member is None:
        return
    response = command.response or {}
    now = clock.now()
    if command.action == "SendLocalList":
        status = str(response.get("status", ""))
        member.last_status = status[:32]
        ours = member.sent_command_id == command.pk
        if status == "Accepted" and ours:
            member.accepted_version, member.accepted_at = _list_version(command.payload), now
        elif status == "Accepted" or status in ("Failed", "VersionMismatch"):
            member.accepted_version = None
        member.save(update_fields=["last_status", "accepted_version", "accepted_at"])
    elif command.action == "GetLocalListVersion":
        reported = _list_version(response)
        member.reported_version, member.reported_at = reported, now
        if member.accepted_version is not None and reported != member.accepted_version:
            member.accepted_version = None
        member.save(update_fields=["reported_version", "reported_at", "accepted_version"])


def local_lists_driver_standing_changed(*, user_id: int) -> list[SendResult]:
    """A driver's standing changed (charging.hooks.driver_standing_changed: a debt arose or was paid):
    the lists holding their tokens are refreshed (their entries now say Blocked, or Accepted again) and
    each of those lists' chargers gets a differential update (a Full one where the accepted version is
    unknown). Commands are queued; nothing waits for the chargers' answers."""
    results: list[SendResult] = []
    lists = LocalAuthList.objects.filter(
        entries__id_token__owner_id=user_id, entries__removed=False
    ).distinct()
    for local_list in lists:
        before = local_list.version
        refreshed = local_list_refresh(local_list=local_list)
        if refreshed.version != before:
            results.extend(
                local_list_send(local_list=refreshed, update_type=DIFFERENTIAL, source="driver_standing")
            )
    return results
