"""Staff API tokens: hashed at rest, created by an operator admin in the admin (key shown once) or with
`manage.py api_token_create` (printed once), revocable, acting as their staff member."""

from __future__ import annotations

import hashlib
from io import StringIO

import pytest
from django.contrib.messages import get_messages
from django.core.management import CommandError, call_command
from django.urls import reverse

from apps.accounts.models import ApiToken, AuditRecord
from apps.accounts.services import api_token_authenticate, api_token_create, api_token_revoke
from tests.factories import DriverFactory, StaffUserFactory

pytestmark = pytest.mark.django_db


def _run(*args: str) -> tuple[int, str, str]:
    out = StringIO()
    try:
        call_command("api_token_create", *args, stdout=out)
    except CommandError as exc:
        return exc.returncode, out.getvalue(), str(exc)
    return 0, out.getvalue(), ""


def test_the_command_prints_the_key_once_and_keeps_only_its_hash(org_a):
    staff = StaffUserFactory(organisation=org_a, email="ops@alpha.test", role="Technician")

    code, out, _problem = _run("OPS@alpha.test", "--name", "ticketing")

    key = out.strip()
    assert code == 0 and key.startswith("cpo_") and len(key) > 40
    token = ApiToken.objects.get()
    assert (token.user, token.name, token.prefix) == (staff, "ticketing", key[:12])
    assert token.key_hash == hashlib.sha256(key.encode()).hexdigest()
    assert key not in str(ApiToken.objects.values().get())
    audit = AuditRecord.objects.get(action="apitoken.create")
    assert (audit.source, audit.organisation_id, audit.actor_id) == ("cli", org_a.pk, None)
    assert key not in str(audit.detail)
    assert api_token_authenticate(key=key) == token


@pytest.mark.parametrize(
    ("who", "problem"),
    [
        ("nobody@example.com", "No user with the e-mail address nobody@example.com."),
        ("driver@example.com", "driver@example.com is not an active staff member"),
        ("gone@example.com", "gone@example.com is not an active staff member"),
    ],
)
def test_the_command_refuses_anyone_but_active_staff(org_a, who, problem):
    DriverFactory(email="driver@example.com")
    StaffUserFactory(organisation=org_a, email="gone@example.com", is_active=False)

    code, out, message = _run(who)

    assert code != 0 and out == ""
    assert message.startswith(problem)
    assert not ApiToken.objects.exists()


def test_revoked_tokens_never_authenticate_again(org_a):
    token, key = api_token_create(user=StaffUserFactory(organisation=org_a))
    api_token_revoke(token=token)
    api_token_revoke(token=token)  # a second time changes nothing
    assert api_token_authenticate(key=key) is None
    assert AuditRecord.objects.filter(action="apitoken.revoke").count() == 1
    assert api_token_authenticate(key="cpo_" + "x" * 43) is None
    assert api_token_authenticate(key="not-ours") is None


def test_an_operator_admin_creates_a_token_in_the_admin_and_sees_the_key_once(client, org_a, org_b):
    admin_user = StaffUserFactory(organisation=org_a, role="Operator admin")
    colleague = StaffUserFactory(organisation=org_a, role="Technician")
    foreign = StaffUserFactory(organisation=org_b, role="Technician")
    client.force_login(admin_user)
    url = reverse("admin:accounts_apitoken_add")

    refused = client.post(url, {"user": foreign.pk, "name": "theirs"})
    assert refused.status_code == 200 and "user" in refused.context["adminform"].form.errors
    driver = DriverFactory()
    assert "user" in client.post(url, {"user": driver.pk, "name": "x"}).context["adminform"].form.errors

    response = client.post(url, {"user": colleague.pk, "name": "ticketing"}, follow=True)

    assert response.status_code == 200
    token = ApiToken.objects.get()
    (message,) = [str(m) for m in get_messages(response.wsgi_request)][:1]
    key = message.split("<code>")[1].split("</code>")[0]
    assert api_token_authenticate(key=key) == token and token.created_by == admin_user
    assert [(r.action, r.source) for r in AuditRecord.objects.filter(action__startswith="apitoken")] == [
        ("apitoken.create", "admin")
    ]
    page = client.get(reverse("admin:accounts_apitoken_change", args=[token.pk])).content.decode()
    assert key not in page and token.prefix in page


def test_tokens_are_revoked_in_the_admin_and_other_roles_cannot_manage_them(client, org_a):
    token, key = api_token_create(user=StaffUserFactory(organisation=org_a))
    admin_user = StaffUserFactory(organisation=org_a, role="Operator admin")
    client.force_login(admin_user)
    changelist = reverse("admin:accounts_apitoken_changelist")

    client.post(changelist, {"action": "revoke", "_selected_action": [token.pk]})

    token.refresh_from_db()
    assert token.revoked_at is not None and api_token_authenticate(key=key) is None
    technician = StaffUserFactory(organisation=org_a, role="Technician")
    client.force_login(technician)
    assert client.get(changelist).status_code == 403
    assert client.get(reverse("admin:accounts_apitoken_add")).status_code == 403
