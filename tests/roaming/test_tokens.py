"""Tokens receiver (PUT / PATCH / GET per party) and the authorisation of a roaming token at our chargers:
whitelist types, real-time authorisation against the eMSP with a timeout and the configured fallback."""

from __future__ import annotations

import time

import pytest

from apps.charging.choices import AuthorizationStatus
from apps.charging.services import idtoken_authorize
from apps.roaming.authorization import RoamingAuthorizer
from apps.roaming.models import RoamingToken
from tests.factories import ChargingSessionFactory
from tests.processes import free_port
from tests.roaming import ocpi_spec


def _put(ocpi, emsp, token, **params):
    path = f"/ocpi/2.2.1/tokens/{token['country_code']}/{token['party_id']}/{token['uid']}"
    return ocpi("PUT", path, token=emsp.cpo_token, body=token, **params)


def test_an_emsp_stores_updates_and_reads_its_token(registered, emsp, ocpi):
    token = emsp.token("04A1B2C3D4E5F6")
    status, body, _ = _put(ocpi, emsp, token, type="RFID")
    assert (status, body["status_code"]) == (200, 1000)
    stored = RoamingToken.objects.get(uid="04A1B2C3D4E5F6")
    assert (stored.sender, stored.valid, stored.whitelist, stored.contract_id) == (
        registered,
        True,
        "ALWAYS",
        token["contract_id"],
    )
    path = "/ocpi/2.2.1/tokens/NL/EMS/04A1B2C3D4E5F6"
    status, body, _ = ocpi(
        "PATCH", path, token=emsp.cpo_token, body={"valid": False, "last_updated": "2030-01-01T00:00:00Z"}
    )
    assert status == 200
    stored.refresh_from_db()
    assert stored.valid is False
    status, body, _ = ocpi("GET", path, token=emsp.cpo_token)
    assert ocpi_spec.validate(body["data"], "Token")["valid"] is False


def test_bad_token_requests_get_specific_errors(registered, emsp, ocpi):
    token = emsp.token("04A1B2C3D4E5F6")
    path = "/ocpi/2.2.1/tokens/NL/EMS/04A1B2C3D4E5F6"
    broken = dict(token, whitelist="SOMETIMES")
    status, body, _ = _put(ocpi, emsp, broken)
    assert (status, body["status_code"]) == (400, 2001) and "whitelist" in body["status_message"]
    status, body, _ = ocpi("PUT", "/ocpi/2.2.1/tokens/NL/EMS/OTHERUID", token=emsp.cpo_token, body=token)
    assert (status, body["status_code"]) == (400, 2001) and "URL" in body["status_message"]
    status, body, _ = ocpi("PATCH", path, token=emsp.cpo_token, body={"valid": False})
    assert (status, body["status_code"]) == (400, 2001) and "last_updated" in body["status_message"]
    status, body, _ = ocpi(
        "PATCH", path, token=emsp.cpo_token, body={"valid": False, "last_updated": "2030-01-01T00:00:00Z"}
    )
    assert (status, body["status_code"]) == (404, 2004)
    other = dict(token, country_code="BE", party_id="OTH")
    status, body, _ = ocpi(
        "PUT", "/ocpi/2.2.1/tokens/BE/OTH/04A1B2C3D4E5F6", token=emsp.cpo_token, body=other
    )
    assert status == 403
    status, body, _ = _put(ocpi, emsp, token, type="BADGE")
    assert (status, body["status_code"]) == (400, 2001)
    assert not RoamingToken.objects.exists()


def _store(registered, emsp, uid, **kwargs):
    data = emsp.token(uid, **kwargs)
    return RoamingToken.objects.create(
        sender=registered,
        country_code="NL",
        party_id="EMS",
        uid=uid,
        type=data["type"],
        contract_id=data["contract_id"],
        issuer=data["issuer"],
        valid=data["valid"],
        whitelist=data["whitelist"],
        last_updated="2030-01-01T00:00:00Z",
        data=data,
    )


def test_whitelisted_tokens_are_answered_from_the_store_without_asking(registered, site, emsp):
    _store(registered, emsp, "AAAA0001", whitelist="ALWAYS")
    _store(registered, emsp, "AAAA0002", whitelist="ALLOWED", valid=False)
    assert (
        idtoken_authorize(uid="aaaa0001", charge_point=site.charge_point).status
        == AuthorizationStatus.ACCEPTED
    )
    assert (
        idtoken_authorize(uid="AAAA0002", charge_point=site.charge_point).status
        == AuthorizationStatus.BLOCKED
    )
    assert (
        idtoken_authorize(uid="UNKNOWN1", charge_point=site.charge_point).status
        == AuthorizationStatus.INVALID
    )
    assert not [r for r in emsp.received if r.path.endswith("/authorize")]


def test_a_roaming_token_is_invalid_at_another_operators_charger(registered, emsp):
    from tests.factories import ChargePointFactory

    _store(registered, emsp, "AAAA0001", whitelist="ALWAYS")
    assert (
        idtoken_authorize(uid="AAAA0001", charge_point=ChargePointFactory()).status
        == AuthorizationStatus.INVALID
    )


@pytest.mark.parametrize(
    ("allowed", "expected"),
    [
        ("ALLOWED", AuthorizationStatus.ACCEPTED),
        ("BLOCKED", AuthorizationStatus.BLOCKED),
        ("EXPIRED", AuthorizationStatus.EXPIRED),
        ("NO_CREDIT", AuthorizationStatus.BLOCKED),
        ("NOT_ALLOWED", AuthorizationStatus.INVALID),
    ],
)
def test_never_whitelisted_tokens_are_asked_in_real_time(registered, site, emsp, allowed, expected):
    _store(registered, emsp, "BBBB0001", whitelist="NEVER")
    emsp.authorizations["BBBB0001"] = allowed
    assert idtoken_authorize(uid="BBBB0001", charge_point=site.charge_point).status == expected
    [asked] = [r for r in emsp.received if r.path.endswith("/authorize")]
    assert asked.path == "/ocpi/emsp/2.2.1/tokens/BBBB0001/authorize"
    assert asked.query == {"type": ["RFID"]}
    assert asked.body == {"location_id": str(site.location.pk), "evse_uids": [str(site.evse.pk)]}
    # the start right after the Authorize reuses the answer
    idtoken_authorize(uid="BBBB0001", charge_point=site.charge_point)
    assert len([r for r in emsp.received if r.path.endswith("/authorize")]) == 1


def test_an_unreachable_emsp_falls_back_by_whitelist_type_and_is_not_asked_again_at_once(
    registered, site, emsp, settings
):
    settings.CPO_OCPI_REALTIME_TIMEOUT_S = 0.5
    _store(registered, emsp, "CCCC0001", whitelist="ALLOWED_OFFLINE")
    _store(registered, emsp, "CCCC0002", whitelist="NEVER")
    endpoints = [dict(e) for e in registered.endpoints]
    for endpoint in endpoints:
        if endpoint["identifier"] == "tokens":
            endpoint["url"] = f"http://127.0.0.1:{free_port()}/tokens"  # nobody listens
    type(registered).objects.filter(pk=registered.pk).update(endpoints=endpoints)
    started = time.monotonic()
    assert (
        idtoken_authorize(uid="CCCC0001", charge_point=site.charge_point).status
        == AuthorizationStatus.ACCEPTED
    )
    assert (
        idtoken_authorize(uid="CCCC0002", charge_point=site.charge_point).status
        == AuthorizationStatus.INVALID
    )
    settings.CPO_OCPI_REALTIME_FALLBACK = "REJECT"
    assert (
        idtoken_authorize(uid="CCCC0001", charge_point=site.charge_point).status
        == AuthorizationStatus.INVALID
    )
    # bounded: three answers, at most one connection attempt (the party is then known to be down)
    assert time.monotonic() - started < 30


def test_an_unknown_token_at_the_emsp_is_invalid_and_a_token_already_charging_is_concurrent(
    registered, site, emsp
):
    _store(registered, emsp, "DDDD0001", whitelist="NEVER")
    del emsp.tokens["DDDD0001"]  # the eMSP no longer knows it: 2004
    assert (
        idtoken_authorize(uid="DDDD0001", charge_point=site.charge_point).status
        == AuthorizationStatus.INVALID
    )
    _store(registered, emsp, "DDDD0002", whitelist="ALWAYS")
    ChargingSessionFactory(charge_point=site.charge_point, id_tag="DDDD0002", status="ACTIVE")
    assert (
        idtoken_authorize(uid="DDDD0002", charge_point=site.charge_point).status
        == AuthorizationStatus.CONCURRENT_TX
    )
    assert (
        idtoken_authorize(uid="DDDD0002", charge_point=site.charge_point, to_start=False).status
        == AuthorizationStatus.ACCEPTED
    )


def test_prepare_asks_the_emsp_outside_the_authorize_and_the_authorize_reuses_the_answer(
    registered, site, emsp
):
    _store(registered, emsp, "EEEE0001", whitelist="NEVER")
    _store(registered, emsp, "EEEE0002", whitelist="ALWAYS")
    emsp.authorizations["EEEE0001"] = "BLOCKED"
    authorizer = RoamingAuthorizer()
    authorizer.prepare(uid="EEEE0001", charge_point_id=site.charge_point.pk)
    authorizer.prepare(uid="EEEE0002", charge_point_id=site.charge_point.pk)  # whitelisted: nobody asked
    authorizer.prepare(uid="NOTOURS1", charge_point_id=site.charge_point.pk)
    asked = [r.path for r in emsp.received if r.path.endswith("/authorize")]
    assert asked == ["/ocpi/emsp/2.2.1/tokens/EEEE0001/authorize"]
    assert (
        idtoken_authorize(uid="EEEE0001", charge_point=site.charge_point).status
        == AuthorizationStatus.BLOCKED
    )
    assert len([r for r in emsp.received if r.path.endswith("/authorize")]) == 1
