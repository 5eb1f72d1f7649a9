"""The Tokens module, CPO as receiver: eMSPs PUT and PATCH their drivers' tokens; we store them per party.
A party may only store tokens of its own identity, unless it is a hub (whose eMSPs' tokens it forwards)."""

from __future__ import annotations

from typing import Any

from django.db import transaction

from apps.roaming.choices import TokenType, WhitelistType
from apps.roaming.models import Party, RoamingToken
from apps.roaming.protocol import UNKNOWN_TOKEN, OcpiError, parse_datetime

PROFILE_TYPES = frozenset({"CHEAP", "FAST", "GREEN", "REGULAR"})
TOKEN_FIELDS = frozenset(
    {
        "country_code",
        "party_id",
        "uid",
        "type",
        "contract_id",
        "visual_number",
        "issuer",
        "group_id",
        "valid",
        "whitelist",
        "language",
        "default_profile_type",
        "energy_contract",
        "last_updated",
    }
)


def _string(data: dict[str, Any], name: str, max_length: int, *, required: bool) -> str:
    value = data.get(name)
    if value is None:
        if required:
            raise OcpiError(f"token.{name} is required")
        return ""
    if not isinstance(value, str) or len(value) > max_length or (required and not value):
        raise OcpiError(f"token.{name}: a string of at most {max_length} characters is required")
    return value


def token_check(data: Any) -> dict[str, Any]:
    """Check a complete OCPI Token object (2001 naming the first problem); returns the stored fields."""
    if not isinstance(data, dict):
        raise OcpiError("token: a JSON object is required")
    unknown = sorted(set(data) - TOKEN_FIELDS)
    if unknown:
        raise OcpiError(f"token: unknown field(s) {', '.join(unknown)}")
    fields: dict[str, Any] = {
        "country_code": _string(data, "country_code", 2, required=True).upper(),
        "party_id": _string(data, "party_id", 3, required=True).upper(),
        "uid": _string(data, "uid", 36, required=True),
        "contract_id": _string(data, "contract_id", 36, required=True),
        "visual_number": _string(data, "visual_number", 64, required=False),
        "issuer": _string(data, "issuer", 64, required=True),
        "group_id": _string(data, "group_id", 36, required=False),
        "language": _string(data, "language", 2, required=False),
    }
    if data.get("type") not in TokenType.values:
        raise OcpiError(f"token.type: one of {', '.join(TokenType.values)}")
    fields["type"] = data["type"]
    if not isinstance(data.get("valid"), bool):
        raise OcpiError("token.valid: true or false is required")
    fields["valid"] = data["valid"]
    if data.get("whitelist") not in WhitelistType.values:
        raise OcpiError(f"token.whitelist: one of {', '.join(WhitelistType.values)}")
    fields["whitelist"] = data["whitelist"]
    profile = data.get("default_profile_type")
    if profile is not None and profile not in PROFILE_TYPES:
        raise OcpiError(f"token.default_profile_type: one of {', '.join(sorted(PROFILE_TYPES))}")
    contract = data.get("energy_contract")
    if contract is not None and (
        not isinstance(contract, dict) or not isinstance(contract.get("supplier_name"), str)
    ):
        raise OcpiError("token.energy_contract: an object with supplier_name is required")
    fields["last_updated"] = parse_datetime(data.get("last_updated"), "token.last_updated")
    return fields


def _check_owner(party: Party, country_code: str, party_id: str) -> None:
    is_hub = any(isinstance(r, dict) and r.get("role") == "HUB" for r in party.roles or [])
    if not is_hub and (country_code.upper(), party_id.upper()) != (party.country_code, party.party_id):
        raise OcpiError(
            f"{country_code}*{party_id} is not you ({party.country_code}*{party.party_id}): you may only "
            "store your own tokens",
            http_status=403,
        )


@transaction.atomic
def token_put(
    *, party: Party, country_code: str, party_id: str, uid: str, token_type: str, data: Any
) -> tuple[RoamingToken, bool]:
    """Store (create or replace) a token. The URL's country code, party id, uid and type must be the
    object's. Returns (token, created)."""
    _check_owner(party, country_code, party_id)
    fields = token_check(data)
    url_key = (country_code.upper(), party_id.upper(), uid, token_type)
    body_key = (fields["country_code"], fields["party_id"], fields["uid"], fields["type"])
    if url_key != body_key:
        raise OcpiError(
            "the URL's country code, party id, uid and type must be the token's: "
            f"{'/'.join(url_key)} ≠ {'/'.join(body_key)}"
        )
    token, created = RoamingToken.objects.select_for_update(no_key=True).update_or_create(
        sender=party,
        country_code=fields["country_code"],
        party_id=fields["party_id"],
        uid=fields["uid"],
        type=fields["type"],
        defaults={**fields, "data": data},
    )
    return token, created


@transaction.atomic
def token_patch(
    *, party: Party, country_code: str, party_id: str, uid: str, token_type: str, data: Any
) -> RoamingToken:
    """Change some fields of a stored token; `last_updated` is required (2001 without it), an unknown
    token is 2004 (404)."""
    _check_owner(party, country_code, party_id)
    if not isinstance(data, dict):
        raise OcpiError("token: a JSON object is required")
    if "last_updated" not in data:
        raise OcpiError("a PATCH must contain last_updated")
    for key in ("country_code", "party_id", "uid", "type"):
        if (
            key in data
            and str(data[key]).upper()
            != {
                "country_code": country_code.upper(),
                "party_id": party_id.upper(),
                "uid": uid.upper(),
                "type": token_type,
            }[key].upper()
        ):
            raise OcpiError(f"token.{key} cannot be changed by a PATCH")
    token = (
        RoamingToken.objects.select_for_update(no_key=True)
        .filter(
            sender=party,
            country_code=country_code.upper(),
            party_id=party_id.upper(),
            uid=uid,
            type=token_type,
        )
        .first()
    )
    if token is None:
        raise OcpiError(f"unknown token {uid} ({token_type})", status_code=UNKNOWN_TOKEN, http_status=404)
    merged = {**token.data, **data}
    fields = token_check(merged)
    for name, value in fields.items():
        setattr(token, name, value)
    token.data = merged
    token.save()
    return token


def token_get(*, party: Party, country_code: str, party_id: str, uid: str, token_type: str) -> RoamingToken:
    token = RoamingToken.objects.filter(
        sender=party, country_code=country_code.upper(), party_id=party_id.upper(), uid=uid, type=token_type
    ).first()
    if token is None:
        raise OcpiError(f"unknown token {uid} ({token_type})", status_code=UNKNOWN_TOKEN, http_status=404)
    return token
