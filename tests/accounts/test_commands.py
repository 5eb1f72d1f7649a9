"""`manage.py idtoken_add`: idempotent, scriptable, a clear one-line error on bad input."""

from __future__ import annotations

import io
import os
import subprocess
import sys
from datetime import UTC, datetime

import pytest
from django.conf import settings
from django.core.management import call_command
from django.core.management.base import CommandError

from apps.accounts.choices import IdTokenStatus, IdTokenType
from apps.accounts.models import AuditRecord, IdToken
from tests.factories import IdTokenFactory, UserFactory

pytestmark = pytest.mark.django_db


def run(*args: str) -> str:
    out = io.StringIO()
    call_command("idtoken_add", *args, stdout=out)
    return out.getvalue()


def test_creates_a_normalised_token_with_every_option(org_a):
    owner = UserFactory(email="driver@example.com")

    out = run(
        "04:a2:b3:c4",
        "--status", "Blocked",
        "--expires", "2027-01-31T23:59:59+01:00",
        "--owner", "Driver@Example.com",
        "--group-id", "FLEET-1",
        "--organisation", "alpha",
    )  # fmt: skip

    assert out == "created\n"
    token = IdToken.objects.get()
    assert (token.uid, token.type, token.status, token.owner, token.group_id, token.organisation) == (
        "04A2B3C4",
        IdTokenType.ISO14443,
        IdTokenStatus.BLOCKED,
        owner,
        "FLEET-1",
        org_a,
    )
    assert token.expires_at == datetime(2027, 1, 31, 22, 59, 59, tzinfo=UTC)
    assert list(AuditRecord.objects.values_list("action", "source")) == [("idtoken.create", "command")]


def test_defaults_for_a_new_token(db):
    assert run("04a2b3c4d5e680") == "created\n"

    token = IdToken.objects.get()
    assert (token.uid, token.type, token.status, token.expires_at, token.owner, token.organisation) == (
        "04A2B3C4D5E680",
        IdTokenType.ISO14443,
        IdTokenStatus.ACCEPTED,
        None,
        None,
        None,
    )


def test_app_token_type(db):
    assert run("app-user-42", "--type", "Central") == "created\n"

    assert IdToken.objects.get().uid == "APP-USER-42"


@pytest.mark.parametrize("uid", ["MYCARD", "ABCD"])
def test_a_uid_that_is_no_rfid_card_gets_told_to_give_its_type(db, uid):
    """The default type is an RFID card: the error says how to add any other token, and that works."""
    with pytest.raises(CommandError) as excinfo:
        run(uid)

    message = str(excinfo.value)
    assert message.startswith("An RFID uid must be ")
    assert message.endswith(
        f"The default --type is ISO14443 (an RFID card); for a token that is not an RFID card, give its "
        f"type: idtoken_add {uid} --type Central"
    )
    assert "\n" not in message
    assert not IdToken.objects.exists()
    assert run(uid, "--type", "Central") == "created\n"
    assert IdToken.objects.get().type == IdTokenType.CENTRAL


def test_an_explicit_non_rfid_type_gets_no_rfid_hint(db):
    with pytest.raises(CommandError) as excinfo:
        run("BAD UID!", "--type", "Central")

    assert "--type" not in str(excinfo.value)


def test_same_run_twice_is_unchanged(db):
    run("04A2B3C4", "--status", "Accepted", "--expires", "2027-01-01T00:00:00Z")
    audit_count = AuditRecord.objects.count()

    assert run("04-A2-B3-C4", "--status", "Accepted", "--expires", "2027-01-01T00:00:00Z") == "unchanged\n"

    assert IdToken.objects.count() == 1
    assert AuditRecord.objects.count() == audit_count


def test_reports_what_it_updated(db):
    IdTokenFactory(uid="04A2B3C4", status=IdTokenStatus.ACCEPTED)
    UserFactory(email="driver@example.com")

    out = run("04a2b3c4", "--status", "Expired", "--owner", "driver@example.com", "--group-id", "G1")

    assert out == "updated: status, owner, group-id\n"
    token = IdToken.objects.get()
    assert (token.status, token.owner.email, token.group_id) == (
        IdTokenStatus.EXPIRED,
        "driver@example.com",
        "G1",
    )


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (
            ["04A2B3C4", "--expires", "2027-01-31T23:59:59"],
            "--expires must be an ISO 8601 time with a time zone (e.g. 2027-01-31T23:59:59Z), "
            "got '2027-01-31T23:59:59'.",
        ),
        (
            ["04A2B3C4", "--expires", "next tuesday"],
            "--expires must be an ISO 8601 time with a time zone (e.g. 2027-01-31T23:59:59Z), "
            "got 'next tuesday'.",
        ),
        (
            ["04A2B3C4", "--owner", "nobody@example.com"],
            "No user with the e-mail address nobody@example.com.",
        ),
        (["04A2B3C4", "--organisation", "nope"], "No organisation with slug 'nope'."),
        (["XYZ-NOT-HEX"], "An RFID uid must be hexadecimal (0-9, A-F), got XYZ-NOT-HEX."),
        (["04A2B3"], "An RFID uid must be 4 to 10 whole bytes (8 to 20 hex digits), got 6 digits."),
        (["04A2B3C4", "--status", "Lost"], "Error: argument --status: invalid choice: 'Lost'"),
    ],
)
def test_bad_input_fails_with_one_line_and_writes_nothing(args, message):
    with pytest.raises(CommandError) as excinfo:
        run(*args)

    assert str(excinfo.value).startswith(message)
    assert "\n" not in str(excinfo.value)
    assert not IdToken.objects.exists()
    assert not AuditRecord.objects.exists()


def test_exit_status_and_message_from_the_shell():
    """The real command line: non-zero exit and one line on stderr, before the database is touched."""
    env = {**os.environ, "DJANGO_SETTINGS_MODULE": "config.settings.test"}
    result = subprocess.run(
        [sys.executable, "manage.py", "idtoken_add", "04A2B3C4", "--expires", "2027-01-31"],
        cwd=settings.BASE_DIR,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )

    assert result.returncode == 1
    assert result.stdout == ""
    assert result.stderr == (
        "CommandError: --expires must be an ISO 8601 time with a time zone (e.g. 2027-01-31T23:59:59Z), "
        "got '2027-01-31'.\n"
    )
