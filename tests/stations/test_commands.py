"""`manage.py chargepoint_add`: idempotent, scriptable, a clear one-line error on bad input."""

from __future__ import annotations

import io

import pytest
from django.core.management import call_command
from django.core.management.base import CommandError

from apps.accounts.models import AuditRecord
from apps.stations import keys
from apps.stations.choices import ConnectorStandard, PowerType, SecurityProfile
from apps.stations.models import ChargePoint, Connector
from tests.factories import ChargePointFactory, LocationFactory, OrganisationFactory

pytestmark = pytest.mark.django_db

KEY = "s3cret-key-0123456789"


def run(*args: str) -> str:
    out = io.StringIO()
    call_command("chargepoint_add", *args, stdout=out)
    return out.getvalue()


def test_creates_with_location_key_and_connectors(org_a):
    location = LocationFactory(organisation=org_a)

    out = run("CP-NEW-1", "--location", str(location.pk), "--password", KEY, "--connectors", "2")

    assert out == "created\n"
    cp = ChargePoint.objects.get(identity="CP-NEW-1")
    assert (cp.organisation, cp.location, cp.security_profile) == (org_a, location, SecurityProfile.BASIC)
    assert keys.verify_key(KEY, cp.auth_key_hash)
    connectors = Connector.objects.filter(evse__charge_point=cp).order_by("evse__evse_id")
    assert [
        (c.evse.evse_id, c.connector_id, c.standard, c.power_type, c.max_power_w) for c in connectors
    ] == [
        (1, 1, ConnectorStandard.IEC_62196_T2, PowerType.AC_3_PHASE, 22000),
        (2, 1, ConnectorStandard.IEC_62196_T2, PowerType.AC_3_PHASE, 22000),
    ]
    assert (
        AuditRecord.objects.filter(
            action="chargepoint.create", source="command", target_id=str(cp.pk)
        ).count()
        == 1
    )


def test_second_identical_run_is_unchanged(org_a):
    location = LocationFactory(organisation=org_a)
    args = ("CP-NEW-1", "--location", str(location.pk), "--password", KEY, "--connectors", "2")
    run(*args)
    audit_count, hash_before = AuditRecord.objects.count(), ChargePoint.objects.get().auth_key_hash

    assert run(*args) == "unchanged\n"

    assert ChargePoint.objects.get().auth_key_hash == hash_before
    assert Connector.objects.count() == 2
    assert AuditRecord.objects.count() == audit_count


def test_reports_what_it_updated(org_a):
    first, second = LocationFactory(organisation=org_a), LocationFactory(organisation=org_a)
    run("CP-NEW-1", "--location", str(first.pk))

    out = run("CP-NEW-1", "--location", str(second.pk), "--password", KEY, "--connectors", "1")

    assert out == "updated: location, password, connectors\n"
    cp = ChargePoint.objects.get(identity="CP-NEW-1")
    assert cp.location == second
    assert cp.security_profile == SecurityProfile.BASIC
    assert keys.verify_key(KEY, cp.auth_key_hash)


def test_uses_the_only_organisation_when_none_is_named(org_a):
    assert run("CP-NEW-1") == "created\n"

    cp = ChargePoint.objects.get(identity="CP-NEW-1")
    assert (cp.organisation, cp.location, cp.security_profile) == (org_a, None, SecurityProfile.NONE)


def test_organisation_by_slug(org_a, org_b):
    assert run("CP-NEW-1", "--organisation", "beta") == "created\n"

    assert ChargePoint.objects.get(identity="CP-NEW-1").organisation == org_b


def test_existing_charge_point_needs_no_organisation(org_a, org_b):
    ChargePointFactory(identity="CP-OLD", organisation=org_b)

    assert run("CP-OLD") == "unchanged\n"


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (
            ["CP/BAD", "--organisation", "alpha"],
            "An OCPP identity has 1 to 48 characters: letters, digits and . _ ~ -",
        ),
        (
            ["CP-NEW-1", "--organisation", "alpha", "--password", "too-short"],
            "An authorisation key must have 16 to 40 characters.",
        ),
        (["CP-NEW-1", "--location", "999999"], "No location with id 999999."),
        (["CP-NEW-1", "--location", "abc"], "No location with id abc."),
        (["CP-NEW-1", "--organisation", "nope"], "No organisation with slug 'nope'."),
        (
            ["CP-NEW-1", "--organisation", "alpha", "--connectors", "0"],
            "A charge point has 1 to 64 connectors.",
        ),
        (
            ["CP-NEW-1"],
            "Name the operator with --organisation SLUG or --location ID (organisations: alpha, beta).",
        ),
    ],
)
def test_bad_input_fails_with_one_line_and_writes_nothing(org_a, org_b, args, message):
    with pytest.raises(CommandError) as excinfo:
        run(*args)

    assert str(excinfo.value).startswith(message)
    assert "\n" not in str(excinfo.value)
    assert excinfo.value.returncode == 1
    assert not ChargePoint.objects.exists()
    assert not AuditRecord.objects.exists()


def test_location_of_another_organisation(org_a, org_b):
    location = LocationFactory(organisation=org_b)

    with pytest.raises(CommandError, match=r"^The location belongs to another operator\.$"):
        run("CP-NEW-1", "--organisation", "alpha", "--location", str(location.pk))

    assert not ChargePoint.objects.exists()


def test_identity_case_clash(org_a):
    ChargePointFactory(identity="CP-Case", organisation=org_a)

    with pytest.raises(
        CommandError, match=r"^A charge point with this OCPP identity already exists as CP-Case\.$"
    ):
        run("cp-case")

    assert list(ChargePoint.objects.values_list("identity", flat=True)) == ["CP-Case"]


def test_existing_charge_point_of_another_organisation(org_a, org_b):
    ChargePointFactory(identity="CP-OLD", organisation=org_b)

    with pytest.raises(CommandError, match=r"^Charge point CP-OLD belongs to another operator\.$"):
        run("CP-OLD", "--organisation", "alpha")

    assert ChargePoint.objects.get(identity="CP-OLD").organisation == org_b


def test_no_organisation_at_all(db):
    with pytest.raises(CommandError, match=r"^No organisation exists yet"):
        run("CP-NEW-1")


def test_bad_connectors_roll_back_the_new_charge_point(org_a):
    with pytest.raises(CommandError, match="1 to 64 connectors"):
        run("CP-NEW-1", "--organisation", "alpha", "--connectors", "65")

    assert not ChargePoint.objects.exists()
    assert not AuditRecord.objects.exists()


def test_other_organisations_are_listed(db):
    OrganisationFactory(slug="one")
    OrganisationFactory(slug="two")

    with pytest.raises(CommandError, match=r"\(organisations: one, two\)\.$"):
        run("CP-NEW-1")
