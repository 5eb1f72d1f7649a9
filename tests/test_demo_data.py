"""The demo data: fixtures/demo.json as loaded by `manage.py load_demo` (and so by `make run`)."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from decimal import Decimal as D

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
from apps.tariffs.models import Tariff, TariffAssignment, TariffElement
from apps.tariffs.selectors import charge_points_without_tariff, price_summary_for_connectors
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
    Tariff: 8,
    TariffElement: 18,
    TariffAssignment: 15,
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
        "11 locations, 26 charge points, 41 EVSEs, 44 connectors, 8 tariffs, 18 tariff elements, "
        "15 tariff assignments"
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
    assert (parent.time_zone, sub.time_zone, other.time_zone) == (
        "Europe/Berlin",
        "Europe/Paris",
        "Europe/Vienna",
    )
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


# A Tuesday in winter: 10:00 and 18:00 in Berlin, Paris and Vienna (UTC+1).
TUESDAY_10 = datetime(2026, 1, 13, 9, 0, tzinfo=UTC)
TUESDAY_18 = datetime(2026, 1, 13, 17, 0, tzinfo=UTC)


def _prices(identity, at):
    connector = Connector.objects.filter(evse__charge_point__identity=identity).order_by("pk").first()
    return price_summary_for_connectors(connector_ids=[connector.pk], at=at)[connector.pk].as_dict()


def test_every_demo_charge_point_has_a_tariff_in_force():
    call_command("load_demo")

    assert list(charge_points_without_tariff(charge_points=ChargePoint.objects.all())) == []
    assert set(Tariff.objects.values_list("organisation__slug", flat=True)) == {
        "demo-voltaro",
        "demo-voltaro-fr",
        "demo-alpenstrom",
    }


def test_demo_prices_by_time_of_day_country_place_and_charger():
    call_command("load_demo")

    # gross prices: VAT from the location's country (DE 19 %, FR and AT 20 %)
    berlin_ac, berlin_peak = _prices("VOL-BER-001", TUESDAY_10), _prices("VOL-BER-001", TUESDAY_18)
    assert (berlin_ac["energy_per_kwh"], berlin_peak["energy_per_kwh"]) == ("0.4046", "0.4998")
    assert (berlin_ac["idle_per_minute"], berlin_ac["idle_grace_minutes"]) == ("0.1190", 240)
    assert _prices("VOL-BER-003", TUESDAY_10)["energy_per_kwh"] == "0.5831"  # DC charger: HPC tariff
    paris = _prices("VFR-PAR-003", TUESDAY_18)
    assert (paris["energy_per_kwh"], paris["min_price"]) == ("0.5520", "0.60")
    rapide = _prices("VFR-PAR-001", TUESDAY_10)
    assert (rapide["energy_per_kwh"], rapide["time_per_minute"]) == ("0.5880", "0.0200")
    assert _prices("ALP-VIE-001", TUESDAY_18)["energy_per_kwh"] == "0.6240"
    per_minute = _prices("VOL-BER-004", TUESDAY_10)  # Berlin Südkreuz P+R
    assert (per_minute["energy_per_kwh"], per_minute["time_per_minute"]) == ("0.0000", "0.0595")
    salzburg = _prices("ALP-SZG-002", TUESDAY_10)
    assert (salzburg["time_per_minute"], salzburg["session_fee"]) == ("0.1200", "0.60")
    free = _prices("VOL-MUC-004", TUESDAY_18)  # München Riem Arcaden
    assert (free["energy_per_kwh"], free["time_per_minute"], free["session_fee"]) == (
        "0.0000",
        "0.0000",
        "0.00",
    )
    assert free["text"] == "Free charging for Riem Arcaden visitors"


def test_a_demo_session_ends_with_a_priced_cdr(monkeypatch):
    from apps.charging.services import session_start, session_stop
    from apps.tariffs import tasks
    from apps.tariffs.services import cdr_issue

    monkeypatch.setattr(tasks.cdr_issue_task, "delay", lambda session_id: None)
    call_command("load_demo")
    cdrs = {}
    for identity in ("VOL-BER-001", "VOL-MUC-004"):
        cp = ChargePoint.objects.get(identity=identity)
        session = session_start(
            charge_point_id=cp.pk,
            evse_id=1,
            id_tag="04A2B3C4D5E680",
            meter_start_wh=1000,
            started_at_charger=TUESDAY_10,
            received_at=TUESDAY_10,
            protocol=cp.ocpp_protocol,
        ).session
        stop = TUESDAY_10.replace(hour=10)
        session_stop(
            charge_point_id=cp.pk,
            transaction_ref=session.transaction_ref,
            meter_stop_wh=21000,
            stopped_at_charger=stop,
            received_at=stop,
            reason="EVDisconnected",
        )
        cdrs[identity] = cdr_issue(session_id=session.pk, now=stop)

    berlin, free = cdrs["VOL-BER-001"], cdrs["VOL-MUC-004"]
    assert (berlin.net, berlin.tax, berlin.gross) == (D("6.80"), D("1.29"), D("8.09"))  # 20 kWh x 0.34, 19 %
    assert berlin.number == "VOL-2026-000001"
    assert (free.gross, free.tariff.name, free.energy_wh) == (
        D(0),
        "Riem Arcaden: free while you shop",
        20000,
    )
    assert free.number == "VOL-2026-000002"
