"""Sessions and CDRs pushed to the eMSP (PUT on start, PATCH while running and on stop, the CDR POSTed once
with the price our pricing computed), EVSE status PATCHed, retries with back-off, order per object, a failed
push visible and retried. The test is the Celery worker (pushes_send_due)."""

from __future__ import annotations

from datetime import timedelta
from decimal import Decimal

from apps.charging.services import session_start, session_stop
from apps.roaming import pushes
from apps.roaming.choices import PushStatus
from apps.roaming.credentials import token_a_issue
from apps.roaming.models import Push, RoamingSession, RoamingToken
from apps.roaming.sessions import evse_status_push, roaming_session_on_event, roaming_sessions_update
from apps.roaming.sync import party_objects_sync
from apps.stations.services import connector_status_record
from apps.tariffs.services import cdr_credit, cdr_issue
from cpo import clock
from tests.factories import ChargingSessionFactory
from tests.roaming import ocpi_spec


def _token(registered, emsp, uid="04AABBCCDD", whitelist="ALWAYS"):
    data = emsp.token(uid, whitelist=whitelist)
    return RoamingToken.objects.create(
        sender=registered,
        country_code="NL",
        party_id="EMS",
        uid=uid,
        type="RFID",
        contract_id=data["contract_id"],
        issuer=data["issuer"],
        valid=True,
        whitelist=whitelist,
        last_updated=clock.now(),
        data=data,
    )


def _charge(site, uid, *, start, minutes=30, wh=11000):
    result = session_start(
        charge_point_id=site.charge_point.pk,
        evse_id=1,
        id_tag=uid,
        meter_start_wh=1000,
        started_at_charger=start,
        received_at=start,
        protocol="ocpp1.6",
    )
    return result


def test_a_roaming_session_is_pushed_updated_ended_and_its_cdr_posted_once(registered, site, emsp):
    _token(registered, emsp)
    start = clock.now() - timedelta(minutes=40)
    result = _charge(site, "04aabbccdd", start=start)
    assert result.auth.status == "Accepted"
    roaming = RoamingSession.objects.get(session=result.session)
    assert (roaming.party, roaming.auth_method, roaming.ocpi_id) == (
        registered,
        "WHITELIST",
        str(result.session.pk),
    )
    assert pushes.pushes_send_due() == 1
    session = emsp.sessions[roaming.ocpi_id]
    ocpi_spec.validate(session, "Session")
    assert session["status"] == "ACTIVE" and session["cdr_token"]["uid"] == "04AABBCCDD"
    assert session["location_id"] == str(site.location.pk) and session["evse_uid"] == str(site.evse.pk)
    put = emsp.received[-1]
    assert (put.method, put.path) == ("PUT", f"/ocpi/emsp/2.2.1/sessions/DE/CPO/{roaming.ocpi_id}")

    assert roaming_sessions_update() == 1
    assert pushes.pushes_send_due() == 1
    assert emsp.received[-1].method == "PATCH"

    stop = start + timedelta(minutes=30)
    session_stop(
        charge_point_id=site.charge_point.pk,
        transaction_ref=result.session.transaction_ref,
        meter_stop_wh=12000,
        stopped_at_charger=stop,
        received_at=stop,
        reason="Local",
    )
    cdr = cdr_issue(session_id=result.session.pk, now=stop + timedelta(days=2))
    assert pushes.pushes_send_due() == 2  # the session's PATCH, then the CDR
    assert emsp.sessions[roaming.ocpi_id]["status"] == "COMPLETED"
    assert emsp.sessions[roaming.ocpi_id]["kwh"] == 11
    [posted] = emsp.cdrs
    ocpi_spec.validate(posted, "CDR")
    # our price: 11 kWh x 0.30 + 1.00 flat = 4.30 net, 19 % VAT
    assert posted["total_cost"] == {"excl_vat": 4.3, "incl_vat": float(cdr.gross.quantize(Decimal("0.01")))}
    assert cdr.gross.quantize(Decimal("0.01")) == Decimal("5.12")
    assert posted["total_energy"] == 11 and posted["session_id"] == roaming.ocpi_id
    assert posted["tariffs"][0]["elements"][0]["price_components"][0] == {
        "type": "ENERGY",
        "price": 0.3,
        "vat": 19,
        "step_size": 1,
    }
    # issuing again changes nothing; a credit is pushed as a credit CDR
    assert cdr_issue(session_id=result.session.pk).pk == cdr.pk
    assert pushes.pushes_send_due() == 0
    credit = cdr_credit(cdr=cdr, reason="goodwill")
    assert pushes.pushes_send_due() == 1
    ocpi_spec.validate(emsp.cdrs[-1], "CDR")
    assert emsp.cdrs[-1]["credit"] is True and emsp.cdrs[-1]["credit_reference_id"] == posted["id"]
    assert emsp.cdrs[-1]["total_cost"]["incl_vat"] == float(credit.gross.quantize(Decimal("0.01")))


def test_a_session_of_our_own_driver_is_not_pushed(registered, site, emsp):
    from tests.factories import IdTokenFactory

    IdTokenFactory(uid="OWNCARD1", organisation=site.org)
    _charge(site, "OWNCARD1", start=clock.now())
    assert not RoamingSession.objects.exists() and not Push.objects.exists()


def test_a_failing_emsp_gets_retries_with_back_off_then_the_push_fails_and_is_retried(
    registered, site, emsp, settings
):
    settings.CPO_OCPI_PUSH_MAX_ATTEMPTS = 2
    _token(registered, emsp)
    result = _charge(site, "04AABBCCDD", start=clock.now())
    session_stop(
        charge_point_id=site.charge_point.pk,
        transaction_ref=result.session.transaction_ref,
        meter_stop_wh=2000,
        stopped_at_charger=clock.now(),
        received_at=clock.now(),
    )
    emsp.fail["/ocpi/emsp/2.2.1/sessions"] = 2
    now = clock.now()
    assert pushes.pushes_send_due(now=now) == 0
    put, patch = Push.objects.order_by("pk")
    put.refresh_from_db()
    assert (put.status, put.attempts, put.last_http_status) == (PushStatus.RETRYING, 1, 503)
    assert put.next_attempt_at == now + timedelta(seconds=1)
    patch.refresh_from_db()
    assert (patch.status, patch.attempts) == (PushStatus.PENDING, 0)  # waits behind the PUT
    assert pushes.pushes_send_due(now=now) == 0  # not due yet
    assert pushes.pushes_send_due(now=now + timedelta(seconds=1)) == 0
    put.refresh_from_db()
    assert (put.status, put.attempts) == (PushStatus.FAILED, 2)
    assert "503" in put.last_error
    assert pushes.pushes_send_due(now=now + timedelta(hours=1)) == 0  # the PATCH still waits
    pushes.push_retry(push=put)
    assert pushes.pushes_send_due() == 2
    methods = [r.method for r in emsp.received if "/sessions/" in r.path]
    assert methods == ["PUT", "PUT", "PUT", "PATCH"]
    emsp.errors.clear()


def test_an_evse_status_change_is_patched_once_per_change(registered, site, emsp):
    connector_status_record(
        charge_point_id=site.charge_point.pk,
        evse_id=1,
        connector_id=1,
        status="Charging",
        received_at=clock.now(),
    )
    assert evse_status_push(charge_point_id=site.charge_point.pk, evse_id=1) == 1
    assert evse_status_push(charge_point_id=site.charge_point.pk, evse_id=1) == 0  # unchanged
    assert pushes.pushes_send_due() == 1
    patch = emsp.received[-1]
    assert (patch.method, patch.path) == (
        "PATCH",
        f"/ocpi/emsp/2.2.1/locations/DE/CPO/{site.location.pk}/{site.evse.pk}",
    )
    assert patch.body["status"] == "CHARGING"


def test_changed_locations_and_tariffs_are_put_to_the_emsp_once_per_change(registered, site, emsp):
    assert party_objects_sync(party=registered) == 2
    assert pushes.pushes_send_due() == 2
    location = ocpi_spec.validate(emsp.locations[str(site.location.pk)], "Location")
    assert location["evses"][0]["connectors"][0]["tariff_ids"] == [str(site.tariff.pk)]
    tariff = ocpi_spec.validate(emsp.tariffs[str(site.tariff.pk)], "Tariff")
    assert tariff["currency"] == "EUR"
    assert party_objects_sync(party=registered) == 0  # nothing changed
    site.tariff.alt_text = {"en": "0.30/kWh and 1.00 per session"}
    site.tariff.save()
    assert party_objects_sync(party=registered) == 1
    assert pushes.pushes_send_due() == 1
    assert emsp.tariffs[str(site.tariff.pk)]["tariff_alt_text"][0]["text"] == "0.30/kWh and 1.00 per session"
    put = emsp.received[-1]
    assert (put.method, put.path) == ("PUT", f"/ocpi/emsp/2.2.1/tariffs/DE/CPO/{site.tariff.pk}")


def test_a_2_0_1_transaction_whose_roaming_token_came_later_becomes_a_roaming_session(registered, site, emsp):
    _token(registered, emsp, uid="04LATE0001")
    session = ChargingSessionFactory(
        charge_point=site.charge_point, protocol="ocpp2.0.1", id_tag="", auth_status=""
    )
    kwargs = {
        "at": clock.now(),
        "charging_state": "",
        "previous_state": "",
        "trigger_reason": "",
        "stopped_reason": "",
    }
    roaming_session_on_event(session=session, **kwargs)
    assert not RoamingSession.objects.exists()  # nobody presented a token yet
    session.id_tag, session.auth_status = "04LATE0001", "Accepted"
    session.save()
    roaming_session_on_event(session=session, **kwargs)
    roaming_session_on_event(session=session, **kwargs)  # once
    roaming = RoamingSession.objects.get()
    assert (roaming.session, roaming.token.uid) == (session, "04LATE0001")
    assert pushes.pushes_send_due() == 1
    ocpi_spec.validate(emsp.sessions[roaming.ocpi_id], "Session")


def test_the_emsp_pulls_its_sessions(registered, site, emsp, ocpi):
    _token(registered, emsp)
    result = _charge(site, "04AABBCCDD", start=clock.now() - timedelta(minutes=5))
    status, body, response = ocpi("GET", "/ocpi/2.2.1/sessions", token=emsp.cpo_token)
    assert status == 200 and response["X-Total-Count"] == "1"
    [session] = body["data"]
    ocpi_spec.validate(session, "Session")
    assert (session["id"], session["status"]) == (str(result.session.pk), "ACTIVE")


def test_a_hub_stores_tokens_of_its_emsps_and_their_sessions_are_routed_to_them(site, emsp, ocpi):
    """Through a hub (role HUB): the eMSP behind it owns the token; our pushes name it in OCPI-to-*."""
    party, token_a = token_a_issue(organisation=site.org, name="Hub")
    emsp.accepted.add("hub-token-b")
    hub = emsp.credentials("hub-token-b")
    hub["roles"][0]["role"] = "HUB"
    status, body, _ = ocpi("POST", "/ocpi/2.2.1/credentials", token=token_a, body=hub, route=None)
    assert status == 200
    token_c = body["data"]["token"]
    token = dict(emsp.token("04HUB00001"), country_code="BE", party_id="BEM")
    status, body, _ = ocpi(
        "PUT", "/ocpi/2.2.1/tokens/BE/BEM/04HUB00001", token=token_c, body=token, route=("BE", "BEM")
    )
    assert status == 200, body
    assert RoamingToken.objects.get(uid="04HUB00001").sender == party
    _charge(site, "04HUB00001", start=clock.now())
    push = Push.objects.get(module="sessions")
    assert (push.to_country_code, push.to_party_id) == ("BE", "BEM")
