"""Operators manage roaming in the admin: a new party gets a token A (shown once), or is registered with
from its versions URL and token A; failed pushes are listed and retried."""

from __future__ import annotations

import hashlib
import re

from django.contrib.messages import get_messages
from django.urls import reverse

from apps.roaming.choices import PartyStatus, PushStatus
from apps.roaming.models import Party, Push
from tests.factories import PartyFactory, PushFactory


def _messages(response) -> list[str]:
    return [str(m) for m in get_messages(response.wsgi_request)]


def test_adding_a_party_issues_a_token_a_shown_once(client, superuser, site):
    client.force_login(superuser)
    response = client.post(
        reverse("admin:roaming_party_add"),
        {"organisation": site.org.pk, "name": "Hubject", "realtime_authorization": "on"},
        follow=True,
    )
    assert response.status_code == 200
    [message] = [m for m in _messages(response) if "Token A" in m]
    token = re.search(r"\(shown once\): (\S+)", message).group(1)
    party = Party.objects.get(name="Hubject")
    assert party.status == PartyStatus.PENDING
    assert party.token_a_hash == hashlib.sha256(token.encode()).hexdigest()
    assert token not in response.content.decode().replace(message, "")  # nowhere else on the page


def test_adding_a_party_with_its_versions_url_and_token_a_registers_with_it(client, superuser, site, emsp):
    emsp.accepted.add("their-token-a")
    client.force_login(superuser)
    response = client.post(
        reverse("admin:roaming_party_add"),
        {
            "organisation": site.org.pk,
            "name": "Test eMSP",
            "their_versions_url": emsp.versions_url,
            "their_token_a": "their-token-a",
        },
        follow=True,
    )
    assert any("Registered with" in m for m in _messages(response))
    party = Party.objects.get(name="Test eMSP")
    assert (party.status, party.country_code, party.party_id) == (PartyStatus.REGISTERED, "NL", "EMS")


def test_a_versions_url_without_a_token_is_refused(client, superuser, site):
    client.force_login(superuser)
    response = client.post(
        reverse("admin:roaming_party_add"),
        {"organisation": site.org.pk, "name": "Half", "their_versions_url": "https://emsp.example/versions"},
    )
    assert response.status_code == 200
    assert "Give both their versions URL and their token A, or neither." in response.content.decode()
    assert not Party.objects.filter(name="Half").exists()


def test_failed_pushes_are_retried_from_the_admin(client, superuser, site):
    party = PartyFactory(organisation=site.org)
    failed = PushFactory(party=party, status=PushStatus.FAILED, attempts=8, last_error="HTTP 503")
    sent = PushFactory(party=party, status=PushStatus.SENT, attempts=1)
    client.force_login(superuser)
    changelist = reverse("admin:roaming_push_changelist")
    assert "HTTP 503" in client.get(changelist + "?status=FAILED").content.decode()
    client.post(changelist, {"action": "retry", "_selected_action": [failed.pk, sent.pk]}, follow=True)
    failed.refresh_from_db()
    sent.refresh_from_db()
    assert (failed.status, failed.attempts) == (PushStatus.PENDING, 0)
    assert sent.status == PushStatus.SENT
    assert Push.objects.count() == 2
