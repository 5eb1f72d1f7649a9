"""The credentials module both ways: a party registers with our token A, the tokens B/C exchange, update,
unregister; we register with a party from its versions URL and token A; tokens we only check are hashed."""

from __future__ import annotations

import hashlib
import io

import pytest
from django.core.management import call_command

from apps.roaming import credentials
from apps.roaming.choices import PartyStatus
from apps.roaming.models import Party
from apps.roaming.protocol import OcpiError
from tests.roaming import ocpi_spec


def test_versions_and_details_answer_token_a_and_list_our_modules(site, ocpi):
    _party, token_a = credentials.token_a_issue(organisation=site.org, name="Hub")
    status, body, _ = ocpi("GET", "/ocpi/versions", token=token_a, route=None)
    assert status == 200 and body["status_code"] == 1000
    assert body["data"] == [{"version": "2.2.1", "url": "http://testserver/ocpi/2.2.1"}]
    ocpi_spec.validate(body["data"][0], "Version")
    status, body, _ = ocpi("GET", "/ocpi/2.2.1", token=token_a, route=None)
    details = ocpi_spec.validate(body["data"], "version_information_get_details_endpoint_data")
    assert {(e["identifier"], e["role"]) for e in details["endpoints"]} >= {
        ("credentials", "SENDER"),
        ("locations", "SENDER"),
        ("tariffs", "SENDER"),
        ("sessions", "SENDER"),
        ("cdrs", "SENDER"),
        ("tokens", "RECEIVER"),
        ("commands", "RECEIVER"),
    }


def test_no_token_a_wrong_token_or_token_a_on_a_module_is_401(site, ocpi):
    _party, token_a = credentials.token_a_issue(organisation=site.org, name="Hub")
    assert ocpi("GET", "/ocpi/versions", token=None, route=None)[0] == 401
    assert ocpi("GET", "/ocpi/versions", token="not-a-token", route=None)[0] == 401
    status, body, _ = ocpi("GET", "/ocpi/2.2.1/locations", token=token_a)
    assert (status, body["status_code"]) == (401, 2000)


def test_a_party_registers_with_our_token_a_and_token_a_stops_working(site, emsp, ocpi):
    party, token_a = credentials.token_a_issue(organisation=site.org, name="Test eMSP")
    assert party.token_a_hash == hashlib.sha256(token_a.encode()).hexdigest()
    emsp.accepted.add("token-b")
    status, body, _ = ocpi(
        "POST", "/ocpi/2.2.1/credentials", token=token_a, body=emsp.credentials("token-b"), route=None
    )
    assert status == 200 and body["status_code"] == 1000
    ours = ocpi_spec.validate(body["data"], "Credentials")
    assert ours["roles"] == [
        {"role": "CPO", "party_id": "CPO", "country_code": "DE", "business_details": {"name": "CPO"}}
    ]
    token_c = ours["token"]
    party.refresh_from_db()
    assert party.status == PartyStatus.REGISTERED
    assert (party.country_code, party.party_id) == ("NL", "EMS")
    assert party.outgoing_token == "token-b"
    assert party.incoming_token_hash == hashlib.sha256(token_c.encode()).hexdigest()
    assert token_c not in str(Party.objects.values_list().get(pk=party.pk))  # only its digest is stored
    assert party.endpoint("sessions", "RECEIVER") == f"{emsp.base}/2.2.1/sessions"
    # we read its versions with its token B
    assert [r.path for r in emsp.received] == ["/ocpi/emsp/versions", "/ocpi/emsp/2.2.1"]
    assert ocpi("GET", "/ocpi/versions", token=token_a, route=None)[0] == 401
    assert ocpi("GET", "/ocpi/2.2.1/locations", token=token_c)[0] == 200
    # registered: POST again is 405, the update is PUT
    status, body, _ = ocpi(
        "POST", "/ocpi/2.2.1/credentials", token=token_c, body=emsp.credentials("token-b"), route=None
    )
    assert (status, body["status_code"]) == (405, 2000)


def test_update_replaces_the_tokens_and_delete_unregisters(registered, emsp, ocpi):
    old = emsp.cpo_token
    emsp.accepted.add("token-b2")
    status, body, _ = ocpi(
        "PUT", "/ocpi/2.2.1/credentials", token=old, body=emsp.credentials("token-b2"), route=None
    )
    assert status == 200, body
    new = body["data"]["token"]
    assert new != old
    assert ocpi("GET", "/ocpi/2.2.1/locations", token=old)[0] == 401
    assert ocpi("GET", "/ocpi/2.2.1/locations", token=new)[0] == 200
    registered.refresh_from_db()
    assert registered.outgoing_token == "token-b2"
    status, _body, _ = ocpi("DELETE", "/ocpi/2.2.1/credentials", token=new, route=None)
    assert status == 200
    registered.refresh_from_db()
    assert registered.status == PartyStatus.UNREGISTERED and registered.outgoing_token == ""
    assert ocpi("GET", "/ocpi/2.2.1/credentials", token=new, route=None)[0] == 401


def test_bad_credentials_are_2001_and_an_unreachable_party_is_3001(site, emsp, ocpi):
    _party, token_a = credentials.token_a_issue(organisation=site.org, name="Test eMSP")
    body = emsp.credentials("token-b")
    body["roles"][0]["party_id"] = "TOOLONG"
    status, answer, _ = ocpi("POST", "/ocpi/2.2.1/credentials", token=token_a, body=body, route=None)
    assert (status, answer["status_code"]) == (400, 2001)
    assert "party_id" in answer["status_message"]
    body = emsp.credentials("token-b-unknown-to-the-emsp")  # the eMSP refuses it: we cannot read it
    status, answer, _ = ocpi("POST", "/ocpi/2.2.1/credentials", token=token_a, body=body, route=None)
    assert answer["status_code"] == 3001
    emsp.errors.clear()  # the eMSP saw a token it did not issue, on purpose


def test_we_register_with_a_party_from_its_versions_url_and_token_a(site, emsp):
    emsp.accepted.add("their-token-a")
    party = Party.objects.create(organisation=site.org, name="Test eMSP")
    party = credentials.credentials_register(
        party=party, versions_url=emsp.versions_url, token_a="their-token-a", base_url="http://testserver"
    )
    assert party.status == PartyStatus.REGISTERED
    assert (party.country_code, party.party_id) == ("NL", "EMS")
    assert party.outgoing_token in emsp.accepted and party.outgoing_token != "their-token-a"
    posted = [r for r in emsp.received if r.method == "POST"]
    assert len(posted) == 1
    # the token B we gave them is what they call us with: only its digest is kept
    assert party.incoming_token_hash == hashlib.sha256(emsp.cpo_token.encode()).hexdigest()
    assert emsp.cpo_versions_url == "http://testserver/ocpi/versions"
    credentials.credentials_unregister(party=party)
    party.refresh_from_db()
    assert party.status == PartyStatus.UNREGISTERED
    assert emsp.received[-1].method == "DELETE" and not emsp.accepted


def test_registering_with_a_party_without_2_2_1_is_3002_and_nothing_is_posted(site, emsp):
    emsp.accepted.add("their-token-a")
    emsp.offered_versions = ["2.1.1"]
    party = Party.objects.create(organisation=site.org, name="Old eMSP")
    with pytest.raises(OcpiError) as raised:
        credentials.credentials_register(
            party=party, versions_url=emsp.versions_url, token_a="their-token-a", base_url="http://testserver"
        )
    assert raised.value.status_code == 3002
    assert "you offer 2.1.1" in raised.value.message
    assert [r.method for r in emsp.received] == ["GET"]
    party.refresh_from_db()
    assert party.status == PartyStatus.PENDING


def test_the_token_a_command_prints_the_token_once_and_keeps_its_digest(site):
    out = io.StringIO()
    call_command("ocpi_token_a", "--name", "Hubject", "--operator", site.org.slug, stdout=out)
    token = next(line.split(": ")[1] for line in out.getvalue().splitlines() if line.startswith("Token A"))
    party = Party.objects.get(name="Hubject")
    assert party.token_a_hash == hashlib.sha256(token.encode()).hexdigest()
    assert party.status == PartyStatus.PENDING
    assert "http://testserver/ocpi/versions" in out.getvalue()
