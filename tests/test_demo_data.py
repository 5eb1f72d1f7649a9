"""The demo data: fixtures/demo.json as loaded by `manage.py load_demo` (and so by `make run`)."""

from __future__ import annotations

import json

import pytest
from django.apps import apps
from django.contrib.gis.geos import Point
from django.core.management import call_command
from django.core.management.base import CommandError

from apps.accounts.choices import IdTokenStatus, Role
from apps.accounts.models import AuditRecord, CustomerAccount, DriverProfile, IdToken, Organisation, User
from apps.stations import keys
from apps.stations.choices import ConnectorStandard, OcppProtocol, PowerType
from apps.stations.management.commands.load_demo import DEMO_FIXTURE
from apps.stations.models import ChargePoint, Connector, Evse, Location
from tests.factories import OrganisationFactory

pytestmark = pytest.mark.django_db

DEMO_PASSWORD = "demo-password-2026"
EXPECTED_COUNTS = {
    Organisation: 3,
    User: 13,
    DriverProfile: 6,
    CustomerAccount: 2,
    IdToken: 10,
    Location: 11,
    ChargePoint: 26,
    Evse: 41,
    Connector: 44,
}
# Demo logins hash with PBKDF2 (what `make run` uses); tests otherwise only install the fast MD5 hasher.
PBKDF2_FIRST = [
    "django.contrib.auth.hashers.PBKDF2PasswordHasher",
    "django.contrib.auth.hashers.MD5PasswordHasher",
]


def _row_counts() -> dict[type, int]:
    return {model: model.objects.count() for model in EXPECTED_COUNTS}


def test_load_demo_loads_everything_once(capsys):
    call_command("load_demo")

    out = capsys.readouterr().out
    assert out.splitlines()[0] == (
        "loaded demo data: 3 organisations, 13 users, 6 driver profiles, 2 customer accounts, 10 id tokens, "
        "11 locations, 26 charge points, 41 EVSEs, 44 connectors"
    )
    assert _row_counts() == EXPECTED_COUNTS
    assert list(AuditRecord.objects.values_list("action", "source")) == [("demo.load", "command")]


def test_second_run_changes_nothing(capsys):
    call_command("load_demo")
    operator = User.objects.get(email="operator@demo.cpo")
    operator.full_name = "Edited by the operator"
    operator.save()
    capsys.readouterr()

    call_command("load_demo")

    assert (
        capsys.readouterr().out
        == "demo data already present (organisation demo-voltaro exists): nothing changed\n"
    )
    assert _row_counts() == EXPECTED_COUNTS
    assert User.objects.get(email="operator@demo.cpo").full_name == "Edited by the operator"
    assert AuditRecord.objects.filter(action="demo.load").count() == 1


def test_force_restores_the_demo_rows(capsys):
    call_command("load_demo")
    ChargePoint.objects.filter(identity="VOL-BER-001").update(vendor="Edited")

    call_command("load_demo", force=True)

    assert ChargePoint.objects.get(identity="VOL-BER-001").vendor == "Alfen"
    assert _row_counts() == EXPECTED_COUNTS
    assert AuditRecord.objects.filter(action="demo.load").count() == 2


def test_refuses_to_overwrite_rows_that_hold_demo_ids():
    own = OrganisationFactory(pk=1, name="My own operator", slug="mine")

    with pytest.raises(CommandError, match=r"would overwrite existing rows \(accounts\.organisation 1\)"):
        call_command("load_demo")

    own.refresh_from_db()
    assert own.name == "My own operator"
    assert Organisation.objects.count() == 1
    assert ChargePoint.objects.count() == 0
    assert not AuditRecord.objects.exists()


def test_sequences_continue_after_the_fixed_ids():
    call_command("load_demo")

    organisation = OrganisationFactory(slug="after-demo")

    assert organisation.pk == 4


def test_every_demo_object_passes_model_validation():
    call_command("load_demo")

    for record in json.loads(DEMO_FIXTURE.read_text(encoding="utf-8")):
        apps.get_model(record["model"]).objects.get(pk=record["pk"]).full_clean()


def test_demo_shape():
    call_command("load_demo")

    parent, sub, other = (
        Organisation.objects.get(slug=s) for s in ("demo-voltaro", "demo-voltaro-fr", "demo-alpenstrom")
    )
    assert sub.parent == parent
    assert other.parent is None
    cities = set(Location.objects.values_list("country", "city"))
    assert {("DE", "Berlin"), ("DE", "München"), ("DE", "Hamburg"), ("FR", "Paris"), ("FR", "Lyon")} <= cities
    assert set(Location.objects.values_list("time_zone", flat=True)) == {
        "Europe/Berlin",
        "Europe/Paris",
        "Europe/Vienna",
    }
    berlin = Location.objects.get(name="Berlin Alexanderplatz")
    assert berlin.point.distance(Point(13.4132, 52.5219, srid=4326)) < 0.01  # degrees, ~1 km
    assert set(ChargePoint.objects.values_list("ocpp_protocol", flat=True)) == {
        OcppProtocol.OCPP16,
        OcppProtocol.OCPP201,
    }
    assert Connector.objects.filter(standard=ConnectorStandard.IEC_62196_T2, max_power_w=22000).exists()
    dc = Connector.objects.filter(power_type=PowerType.DC)
    assert set(dc.values_list("standard", flat=True)) == {
        ConnectorStandard.IEC_62196_T2_COMBO,
        ConnectorStandard.CHADEMO,
    }
    assert {min(dc.values_list("max_power_w", flat=True)), max(dc.values_list("max_power_w", flat=True))} == {
        50000,
        150000,
    }
    assert set(IdToken.objects.values_list("status", flat=True)) == set(IdTokenStatus.values)
    assert IdToken.objects.filter(group_id="NORDLICHT-FLEET").count() == 2


def test_demo_charge_points_use_the_documented_keys():
    call_command("load_demo")

    for charge_point in ChargePoint.objects.all():
        assert charge_point.security_profile == 1
        assert keys.verify_key(f"demo-key-{charge_point.identity.lower()}", charge_point.auth_key_hash)


def test_one_staff_user_per_role():
    call_command("load_demo")

    for role, email in [
        (Role.OPERATOR_ADMIN, "operator@demo.cpo"),
        (Role.TECHNICIAN, "technician@demo.cpo"),
        (Role.SUPPORT, "support@demo.cpo"),
        (Role.FINANCE, "finance@demo.cpo"),
    ]:
        user = User.objects.get(email=email)
        assert user.is_staff
        assert list(user.groups.values_list("name", flat=True)) == [role]
    admin = User.objects.get(email="admin@demo.cpo")
    assert (admin.is_staff, admin.is_superuser) == (True, True)


def test_demo_staff_user_logs_in_to_the_admin(client, settings):
    settings.PASSWORD_HASHERS = PBKDF2_FIRST
    call_command("load_demo")

    response = client.post(
        "/admin/login/?next=/admin/",
        {"username": "operator@demo.cpo", "password": DEMO_PASSWORD, "next": "/admin/"},
    )

    assert response.status_code == 302
    assert response["Location"] == "/admin/"
    assert client.get("/admin/").status_code == 200
    assert User.objects.get(email="operator@demo.cpo").password.startswith("pbkdf2_sha256$")


def test_wrong_password_does_not_log_in(client, settings):
    settings.PASSWORD_HASHERS = PBKDF2_FIRST
    call_command("load_demo")

    response = client.post("/admin/login/", {"username": "operator@demo.cpo", "password": "wrong-password"})

    assert response.status_code == 200
    assert "_auth_user_id" not in client.session
