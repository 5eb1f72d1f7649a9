"""Issue 13, personal data: what we keep is what we promise. After DELETE /api/v1/me no table holds the
driver's e-mail address, name or phone number, while the audit trail and the charge records stay (drivers
appear in the trail under a pseudonym, "driver:<public id>")."""

from __future__ import annotations

import importlib
import re
import time
from decimal import Decimal
from types import SimpleNamespace
from urllib.parse import urlparse

import pytest
from django.apps import apps as django_apps
from django.contrib.admin.models import LogEntry
from django.contrib.contenttypes.models import ContentType
from django.core import mail
from django.core.cache import cache
from django.db import DatabaseError, connection, transaction
from django.test import Client
from rest_framework.test import APIClient

from apps.accounts.models import AuditRecord, DriverProfile, IdToken, User
from apps.accounts.services import audit_record_create, idtoken_upsert
from apps.charging.choices import AuthorizationStatus
from apps.charging.metering import Sample
from apps.charging.models import CardLinkRequest, DriverSession
from apps.charging.services import idtoken_authorize, meter_values_record, session_start, session_stop
from apps.ocpp_gateway import presence
from apps.ocpp_gateway.redis_clients import sync_redis
from apps.stations.choices import ConnectorStatus, OcppProtocol
from apps.tariffs.models import ChargeDetailRecord
from apps.tariffs.services import cdr_issue
from cpo import clock
from tests.factories import (
    ChargePointFactory,
    ConnectorFactory,
    DriverFactory,
    EvseFactory,
    OrganisationFactory,
    StaffUserFactory,
    TariffAssignmentFactory,
    TariffElementFactory,
    TariffFactory,
)

EMAIL = "jane.quimbyroe@example.org"
NAME = "Jane Quimbyroe"
PHONE = "+49 170 5550199"
PASSWORD = "a-long-and-fine-password-42"
CARD = "04A2B3C4D5E6F7"

TEXT_TYPES = ("character varying", "character", "text", "json", "jsonb", "ARRAY")


def text_columns() -> list[tuple[str, str, str]]:
    """(schema, table, column) of every text-like column of every table in the database."""
    with connection.cursor() as cursor:
        cursor.execute(
            """
            SELECT c.table_schema, c.table_name, c.column_name
            FROM information_schema.columns c
            JOIN information_schema.tables t USING (table_schema, table_name)
            WHERE t.table_type = 'BASE TABLE'
              AND c.table_schema NOT IN ('pg_catalog', 'information_schema')
              AND c.data_type = ANY(%s)
            ORDER BY 1, 2, 3
            """,
            [list(TEXT_TYPES)],
        )
        return list(cursor.fetchall())


def tables() -> list[tuple[str, str]]:
    with connection.cursor() as cursor:
        cursor.execute(
            """
            SELECT table_schema, table_name FROM information_schema.tables
            WHERE table_type = 'BASE TABLE' AND table_schema NOT IN ('pg_catalog', 'information_schema')
            ORDER BY 1, 2
            """
        )
        return list(cursor.fetchall())


def where_is(text: str) -> set[str]:
    """Every "table.column" whose value contains `text` (case-insensitive), and "table.*" for a row whose
    text form contains it (any other column type)."""
    found: set[str] = set()
    qn = connection.ops.quote_name
    with connection.cursor() as cursor:
        for schema, table, column in text_columns():
            sql = f"SELECT 1 FROM {qn(schema)}.{qn(table)} WHERE position(lower(%s) in lower({qn(column)}::text)) > 0"  # noqa: S608, E501 (quoted names)
            cursor.execute(sql + " LIMIT 1", [text])
            if cursor.fetchone():
                found.add(f"{table}.{column}")
        for schema, table in tables():
            sql = (
                f"SELECT 1 FROM {qn(schema)}.{qn(table)} AS r WHERE position(lower(%s) in lower(r::text)) > 0"  # noqa: S608 (quoted names)
            )
            cursor.execute(sql + " LIMIT 1", [text])
            if cursor.fetchone() and not any(f.startswith(f"{table}.") for f in found):
                found.add(f"{table}.*")
    return found


@pytest.fixture(autouse=True)
def clean():
    cache.clear()
    r = sync_redis()
    for key in r.scan_iter(match="cpo:ocpp:*", count=1000):
        r.delete(key)
    yield
    cache.clear()


@pytest.fixture
def cp(db):
    charge_point = ChargePointFactory(ocpp_protocol=OcppProtocol.OCPP16)
    ConnectorFactory(evse=EvseFactory(charge_point=charge_point, evse_id=1), status=ConnectorStatus.AVAILABLE)
    ConnectorFactory(evse=EvseFactory(charge_point=charge_point, evse_id=2), status=ConnectorStatus.AVAILABLE)
    sync_redis().hset(
        presence.PREFIX + charge_point.identity,
        mapping={
            "channel": "specific.x!y",
            "epoch": 1,
            "server": "t",
            "connected_at": time.time(),
            "last_frame_at": time.time(),
        },
    )
    tariff = TariffFactory(organisation=charge_point.organisation)
    TariffElementFactory(
        tariff=tariff,
        energy_price=Decimal("0.30"),
        flat_price=Decimal("1.00"),
        energy_vat=Decimal("19"),
        flat_vat=Decimal("19"),
    )
    TariffAssignmentFactory(tariff=tariff)
    return charge_point


def charge(*, cp, evse_id: int, id_tag: str, meter_start: int, meter_stop: int) -> int:
    """The charger's side of one charge: started, metered, stopped; then the CDR is issued."""
    at = clock.now()
    charging = session_start(
        charge_point_id=cp.pk,
        evse_id=evse_id,
        id_tag=id_tag,
        meter_start_wh=meter_start,
        started_at_charger=at,
        received_at=at,
        protocol=OcppProtocol.OCPP16,
    ).session
    meter_values_record(
        charge_point_id=cp.pk,
        evse_id=evse_id,
        transaction_ref=charging.transaction_ref,
        samples=[
            Sample(
                sampled_at=at,
                measurand="Energy.Active.Import.Register",
                value=Decimal((meter_start + meter_stop) // 2),
                unit="Wh",
            )
        ],
        received_at=at,
    )
    session_stop(
        charge_point_id=cp.pk,
        transaction_ref=charging.transaction_ref,
        meter_stop_wh=meter_stop,
        stopped_at_charger=clock.now(),
        received_at=clock.now(),
        reason="Local",
    )
    cdr_issue(session_id=charging.pk)
    return charging.pk


def link_card(api: APIClient, cp, uid: str, label: str) -> int:
    """Link a card the way a driver does: ask in the app, then present the card at the charger."""
    asked = api.post("/api/v1/tokens", {"charge_point": cp.pk, "uid": uid, "label": label}, format="json")
    assert asked.status_code == 202, asked.content
    assert idtoken_authorize(uid=uid, charge_point=cp).status == AuthorizationStatus.ACCEPTED
    polled = api.get(asked["Location"]).json()
    assert polled["status"] == "linked", polled
    return polled["token"]["id"]


def a_drivers_life(cp, superuser, django_capture_on_commit_callbacks) -> User:
    """Register, verify, log in, link a card, charge from the app and with the card, fetch the receipts, be
    looked at and changed in the admin, and mistype the address into the admin's sign-in page."""
    anonymous = APIClient()
    with django_capture_on_commit_callbacks(execute=True):
        registered = anonymous.post(
            "/api/v1/auth/register",
            {"email": EMAIL, "password": PASSWORD, "full_name": NAME, "preferred_language": "de"},
            format="json",
        )
    assert registered.status_code == 202, registered.content
    link = re.search(r"https?://\S+", mail.outbox[-1].body).group(0)
    uid, token = urlparse(link).path.rstrip("/").split("/")[-2:]
    assert (
        anonymous.post("/api/v1/auth/email/verify", {"uid": uid, "token": token}, format="json").status_code
        == 200
    )
    assert (
        anonymous.post("/api/v1/auth/token", {"email": EMAIL, "password": "wrong"}, format="json").status_code
        == 401
    )
    pair = anonymous.post("/api/v1/auth/token", {"email": EMAIL, "password": PASSWORD}, format="json").json()
    pair = anonymous.post("/api/v1/auth/token/refresh", {"refresh": pair["refresh"]}, format="json").json()
    api = APIClient()
    api.credentials(HTTP_AUTHORIZATION=f"Bearer {pair['access']}")
    assert api.patch("/api/v1/me", {"phone": PHONE}, format="json").status_code == 200
    link_card(api, cp, CARD, f"{NAME}'s card")
    # a second card, named too, that the driver gives up again before leaving
    spare = link_card(api, cp, "04FFEEDDCCBBAA", f"Spare of {NAME}")
    assert api.delete(f"/api/v1/tokens/{spare}").status_code == 204

    # a charge from the app (remote start with the app token) and one with the card at the charger
    started = api.post(
        "/api/v1/sessions", {"charge_point": cp.pk, "connector": 1}, format="json", HTTP_IDEMPOTENCY_KEY="k-1"
    )
    assert started.status_code == 201, started.content
    app_session = DriverSession.objects.get(pk=started.json()["id"])
    charge(cp=cp, evse_id=1, id_tag=app_session.id_tag, meter_start=100_000, meter_stop=131_400)
    charge(cp=cp, evse_id=2, id_tag=CARD, meter_start=0, meter_stop=5_000)
    sessions = api.get("/api/v1/sessions").json()["results"]
    assert len(sessions) == 2 and all(s["status"] == "COMPLETED" for s in sessions)
    for session in sessions:
        receipt = api.get(f"/api/v1/sessions/{session['id']}/receipt")
        assert receipt.status_code == 200 and NAME in receipt.content.decode()
        assert api.get(f"/api/v1/sessions/{session['id']}/receipt", {"format": "pdf"}).status_code == 200
    exported = api.get("/api/v1/me/export").json()["account"]
    assert (exported["email"], exported["pseudonym"]) == (
        EMAIL,
        f"driver:{User.objects.get(email=EMAIL).public_id}",
    )

    user = User.objects.get(email=EMAIL)
    # staff of the operator where the driver charged open the driver; a superuser changes the profile
    staff = Client()
    staff.force_login(StaffUserFactory(organisation=cp.organisation, role="Operator admin"))
    assert staff.get(f"/admin/accounts/user/{user.pk}/change/").status_code == 200
    assert staff.get("/admin/accounts/auditrecord/", {"q": EMAIL}).status_code == 200
    root = Client()
    root.force_login(superuser)
    assert root.get(f"/admin/accounts/user/{user.pk}/change/").status_code == 200
    profile = DriverProfile.objects.get(user=user)
    changed = root.post(
        f"/admin/accounts/driverprofile/{profile.pk}/change/",
        {"user": user.pk, "phone": PHONE + "0", "preferred_language": "de", "customer_account": ""},
    )
    assert changed.status_code == 302, changed.content.decode()[:2000]
    # someone types the driver's address into the staff sign-in page
    signin = Client().post("/admin/login/", {"username": EMAIL, "password": "guess", "next": "/admin/"})
    assert signin.status_code == 200
    return user


@pytest.mark.django_db
def test_after_deleting_the_account_no_table_holds_the_drivers_email_name_or_phone(
    cp, superuser, django_capture_on_commit_callbacks
):
    user = a_drivers_life(cp, superuser, django_capture_on_commit_callbacks)
    # the search finds what is there: the account itself (and whatever else holds it)
    assert {"accounts_user.email", "accounts_user.full_name"} <= where_is(EMAIL) | where_is(NAME)
    assert "accounts_driverprofile.phone" in where_is(PHONE)
    cdrs = ChargeDetailRecord.objects.filter(session__driver_session__driver=user).count()
    audited = AuditRecord.objects.filter(actor_id=user.pk).count()

    api = APIClient()
    api.force_authenticate(user)
    assert api.delete("/api/v1/me").status_code == 204

    assert where_is(EMAIL) == set()
    assert where_is(NAME) == set()
    assert where_is("Quimbyroe") == set()
    assert where_is(PHONE) == set()
    # what the law asks to keep stays: the charge records and the audit trail, under the pseudonym
    user.refresh_from_db()
    assert (
        cdrs == 2 and ChargeDetailRecord.objects.filter(session__driver_session__driver=user).count() == cdrs
    )
    trail = AuditRecord.objects.filter(actor_id=user.pk)
    assert trail.count() == audited + 1
    assert set(trail.values_list("actor_repr", flat=True)) == {f"driver:{user.public_id}"}
    assert AuditRecord.objects.filter(action="driver.delete", target_repr=f"driver:{user.public_id}").exists()
    # the trail's append-only trigger was lifted only for the erasure: it refuses changes again
    with pytest.raises(DatabaseError, match="append-only"), transaction.atomic():
        AuditRecord.objects.filter(actor_id=user.pk).update(actor_repr="x")


# --- the audit trail names drivers by pseudonym ----------------------------------------------------------


@pytest.mark.django_db
def test_public_ids_are_random_per_account_not_derived_from_the_address():
    first = DriverFactory(email="same@example.org")
    first.delete()
    again = DriverFactory(email="same@example.org")
    other = DriverFactory()
    assert first.public_id != again.public_id != other.public_id
    assert again.public_id.version == 4
    assert User.objects.filter(public_id=again.public_id).get() == again


@pytest.mark.django_db
def test_a_driver_is_audited_by_pseudonym_and_staff_by_name(staff_a):
    driver = DriverFactory(email="ann.driver@example.org", full_name="Ann Driver")
    own = audit_record_create(actor=driver, action="driver.update", target=driver, source="api")
    assert (own.actor_repr, own.target_repr) == (f"driver:{driver.public_id}",) * 2
    # a driver as the target of a staff member's action is not named either; the staff member is
    by_staff = audit_record_create(actor=staff_a, action="driverprofile.update", target=driver.driver_profile)
    assert (by_staff.actor_repr, by_staff.target_repr) == (staff_a.email, f"driver:{driver.public_id}")
    staff_target = audit_record_create(actor=None, action="user.update", target=staff_a)
    assert staff_target.target_repr == staff_a.email
    idtoken_upsert(uid="04AABBCCDD", owner_email="ann.driver@example.org", actor=staff_a)
    record = AuditRecord.objects.get(action="idtoken.create")
    assert record.detail["owner"] == f"driver:{driver.public_id}"
    assert "ann.driver" not in str(AuditRecord.objects.values_list("actor_repr", "target_repr", "detail"))


@pytest.mark.django_db
def test_an_admin_sign_in_typed_with_a_drivers_address_is_audited_under_the_pseudonym(staff_a):
    driver = DriverFactory(email="ann.driver@example.org")
    for username in ("Ann.Driver@example.org", staff_a.email, "nobody@example.org"):
        Client().post("/admin/login/", {"username": username, "password": "guess", "next": "/admin/"})
    failed = AuditRecord.objects.filter(action="admin.login_failed").order_by("pk")
    assert [(r.target_repr, r.detail["username"]) for r in failed] == [
        (f"driver:{driver.public_id}", f"driver:{driver.public_id}"),
        (staff_a.email, staff_a.email),
        ("", "nobody@example.org"),
    ]


@pytest.mark.django_db
def test_a_card_the_driver_gives_up_keeps_no_label_and_deletion_clears_labels_kept_before(cp):
    driver = DriverFactory()
    api = APIClient()
    api.force_authenticate(driver)
    first = link_card(api, cp, "04A1A1A1A1", "Ann's card")
    assert api.delete(f"/api/v1/tokens/{first}").status_code == 204
    assert IdToken.objects.get(pk=first).label == ""
    second = link_card(api, cp, "04B2B2B2B2", "Ann's spare")
    assert api.delete(f"/api/v1/tokens/{second}").status_code == 204
    IdToken.objects.filter(pk=second).update(label="Ann's spare")  # as the release before kept it
    assert CardLinkRequest.objects.filter(driver=driver).exclude(label="").count() == 2
    api.delete("/api/v1/me")
    assert IdToken.objects.get(pk=second).label == ""
    # the requests that linked them kept the labels the driver typed: erased with the account
    assert CardLinkRequest.objects.filter(driver=driver).exclude(label="").count() == 0


@pytest.mark.django_db
def test_erasure_leaves_other_peoples_records_that_merely_share_the_name_alone():
    driver = DriverFactory(email="ann.driver@example.org", full_name="Ann Driver")
    namesake = audit_record_create(
        actor=None, action="organisation.create", target=OrganisationFactory(name="Ann Driver")
    )
    quoting = audit_record_create(actor=None, action="note", detail={"wrote": "mail ANN.DRIVER@example.org"})
    api = APIClient()
    api.force_authenticate(driver)
    assert api.delete("/api/v1/me").status_code == 204
    namesake.refresh_from_db()
    quoting.refresh_from_db()
    assert namesake.target_repr == "Ann Driver"
    assert quoting.detail == {"wrote": f"mail driver:{driver.public_id}"}


# --- migration 0007: the records written before -----------------------------------------------------------


@pytest.mark.django_db
def test_the_migration_rewrites_existing_records_of_drivers_and_of_erased_accounts(staff_a):
    migration = importlib.import_module("apps.accounts.migrations.0007_audit_drivers_pseudonymised")
    live = DriverFactory(email="live@example.org")
    erased = DriverFactory(email="gone@example.org", full_name="Gone Driver")
    user_type = ContentType.objects.get_for_model(User)

    def old_record(**fields) -> AuditRecord:  # as the previous release wrote them: the address copied
        record = AuditRecord(outcome="succeeded", **fields)
        record.save(force_insert=True)
        return record

    by_live = old_record(
        actor=live,
        actor_repr="live@example.org",
        action="driver.register",
        target_type=user_type,
        target_id=str(live.pk),
        target_repr="live@example.org",
    )
    by_erased = old_record(actor=erased, actor_repr="gone@example.org", action="idtoken.create")
    on_profile = old_record(
        actor=staff_a,
        actor_repr=staff_a.email,
        action="driverprofile.update",
        target_type=ContentType.objects.get_for_model(DriverProfile),
        target_id=str(erased.driver_profile.pk),
        target_repr="gone@example.org",
    )
    typed = old_record(
        actor_repr="anonymous",
        action="admin.login_failed",
        target_type=user_type,
        target_id=str(erased.pk),
        target_repr="gone@example.org",
        detail={"username": "gone@example.org", "address": "10.0.0.1"},
    )
    owner = old_record(
        actor=staff_a, actor_repr=staff_a.email, action="idtoken.update", detail={"owner": "gone@example.org"}
    )
    owner_live = old_record(
        actor=staff_a, actor_repr=staff_a.email, action="idtoken.update", detail={"owner": "LIVE@example.org"}
    )
    removed = old_record(actor_id=999_999, actor_repr="removed@example.org", action="x")
    unknown = old_record(
        actor_repr="anonymous", action="admin.login_failed", detail={"username": "who@example.org"}
    )
    log = LogEntry.objects.create(
        user=staff_a,
        content_type=user_type,
        object_id=str(erased.pk),
        object_repr="gone@example.org",
        action_flag=2,
        change_message="[]",
    )
    # erased by the previous release: the account anonymised, the trail and the admin log left as they were
    User.objects.filter(pk=erased.pk).update(email=f"deleted-{erased.pk}@invalid.invalid", full_name="")

    migration.pseudonymise_drivers(django_apps, SimpleNamespace(connection=connection))

    def texts(record):
        record.refresh_from_db()
        return record.actor_repr, record.target_repr, record.detail

    live_id, erased_id = f"driver:{live.public_id}", f"driver:{erased.public_id}"
    assert texts(by_live) == (live_id, live_id, {})
    assert texts(by_erased) == (erased_id, "", {})
    assert texts(on_profile) == (staff_a.email, erased_id, {})
    assert texts(typed) == ("anonymous", erased_id, {"username": erased_id, "address": "10.0.0.1"})
    assert texts(owner) == (staff_a.email, "", {"owner": "erased"})
    assert texts(owner_live) == (staff_a.email, "", {"owner": live_id})
    assert texts(removed) == ("user:999999", "", {})
    assert texts(unknown) == ("anonymous", "", {"username": "who@example.org"})
    log.refresh_from_db()
    assert log.object_repr == erased_id
    assert where_is("gone@example.org") == set()
    # the maintenance switch went off again with the migration
    with pytest.raises(DatabaseError, match="append-only"), transaction.atomic():
        AuditRecord.objects.filter(pk=by_live.pk).update(actor_repr="x")
