"""CSV import/export of locations and charge points through the admin: the library's preview with
per-row errors, tenancy on import and export, and a write-only charge point password."""

from __future__ import annotations

import csv
import io
import re

import pytest
from django.contrib import admin
from django.core.files.uploadedfile import SimpleUploadedFile
from django.urls import reverse
from import_export.formats.base_formats import CSV

from apps.accounts.models import AuditRecord
from apps.stations import keys
from apps.stations.models import ChargePoint, Location
from apps.stations.resources import MASK, ChargePointResource, LocationResource
from tests.factories import ChargePointFactory, LocationFactory

pytestmark = pytest.mark.django_db

KEY = "import-key-0123456789"


def csv_index(model) -> str:
    formats = admin.site._registry[model].get_import_formats()
    return str(next(i for i, fmt in enumerate(formats) if fmt is CSV))


def csv_file(rows: list[dict]) -> SimpleUploadedFile:
    out = io.StringIO()
    writer = csv.DictWriter(out, fieldnames=list(rows[0]))
    writer.writeheader()
    writer.writerows(rows)
    return SimpleUploadedFile("upload.csv", out.getvalue().encode(), content_type="text/csv")


def preview(client, model, rows: list[dict]):
    """Upload `rows` to the model's import page; returns the preview response (nothing is stored yet)."""
    name = model._meta.model_name
    return client.post(
        reverse(f"admin:stations_{name}_import"),
        {"resource": "0", "format": csv_index(model), "import_file": csv_file(rows)},
    )


def confirm(client, model, response):
    """Confirm a clean preview, as the "Confirm import" button does."""
    form = response.context["confirm_form"]
    data = {name: form.initial.get(name, "") for name in form.fields}
    return client.post(reverse(f"admin:stations_{model._meta.model_name}_process_import"), data)


def row_errors(response) -> dict[int, dict[str, list[str]]]:
    return {row.number: row.error_dict for row in response.context["result"].invalid_rows}


def export(client, model, resource_class) -> list[dict]:
    prefix = resource_class.__name__.lower()
    data = {"resource": "0", "format": csv_index(model)}
    data.update({f"{prefix}_{name}": "on" for name in resource_class().get_export_order()})
    response = client.post(reverse(f"admin:stations_{model._meta.model_name}_export"), data)
    assert response.status_code == 200
    assert response["Content-Type"].startswith("text/csv")
    return list(csv.DictReader(io.StringIO(response.content.decode("utf-8-sig"))))


def location_row(**overrides) -> dict:
    row = {
        "organisation": "alpha",
        "name": "Marktplatz",
        "address": "Marktplatz 1",
        "postal_code": "80331",
        "city": "München",
        "country": "de",
        "latitude": "48.1374",
        "longitude": "11.5755",
        "time_zone": "Europe/Berlin",
        "opening_hours": "",
        "is_published": "1",
    }
    row.update(overrides)
    return row


# --- locations -----------------------------------------------------------------------------------


def test_location_import_preview_reports_errors_per_row_and_stores_nothing(client, staff_a, org_a):
    client.force_login(staff_a)

    response = preview(
        client,
        Location,
        [
            location_row(name="Good"),
            location_row(name="No coordinates", latitude="", longitude=""),
            location_row(name="Bad zone", time_zone="Mars/Olympus"),
        ],
    )

    assert response.status_code == 200
    assert "confirm_form" not in response.context
    errors = row_errors(response)
    assert set(errors) == {2, 3}
    assert errors[2] == {"latitude/longitude": ["A location needs coordinates (latitude and longitude)."]}
    assert errors[3] == {"time_zone": ["Mars/Olympus is not an IANA time zone (e.g. Europe/Berlin)."]}
    assert "A location needs coordinates" in response.content.decode()
    assert not Location.objects.exists()


def test_location_import_creates_then_updates_on_reimport(client, staff_a, org_a):
    client.force_login(staff_a)

    first = preview(client, Location, [location_row()])
    assert row_errors(first) == {}
    confirm(client, Location, first)
    second = preview(client, Location, [location_row(city="Munich", latitude="48.14")])
    confirm(client, Location, second)

    location = Location.objects.get()
    assert (location.organisation, location.city, location.country) == (org_a, "Munich", "DE")
    assert location.latitude == pytest.approx(48.14)
    assert location.opening_hours == {"twentyfourseven": True}
    actions = list(AuditRecord.objects.filter(source="import").order_by("pk").values_list("action", "actor"))
    assert actions == [("location.create", staff_a.pk), ("location.update", staff_a.pk)]


def test_location_import_refuses_rows_of_another_organisation_for_staff(client, staff_a, org_a, org_b):
    client.force_login(staff_a)

    response = preview(
        client,
        Location,
        [
            location_row(name="Ours"),
            location_row(name="Theirs", organisation="beta"),
            location_row(name="Nobody's", organisation="nosuch"),
        ],
    )

    errors = row_errors(response)
    assert set(errors) == {2, 3}
    assert errors[2]["organisation"] == ["You may not import rows for the organisation “beta”."]
    assert errors[3]["organisation"] == ["No organisation with the slug “nosuch”."]
    assert not Location.objects.exists()


def test_location_import_does_not_reach_another_organisations_row_by_its_key(client, staff_a, org_b):
    LocationFactory(organisation=org_b, name="Marktplatz", city="Köln")
    client.force_login(staff_a)

    response = preview(client, Location, [location_row(organisation="beta", city="Hijacked")])

    assert row_errors(response)[1]["organisation"] == ["You may not import rows for the organisation “beta”."]
    assert Location.objects.get().city == "Köln"


def test_superuser_imports_for_any_organisation(admin_client, org_a, org_b):
    response = preview(admin_client, Location, [location_row(), location_row(organisation="beta")])
    confirm(admin_client, Location, response)

    assert sorted(Location.objects.values_list("organisation__slug", flat=True)) == ["alpha", "beta"]


def test_location_export_has_coordinates_and_only_the_users_rows(client, staff_a, org_a, org_b):
    own = LocationFactory(organisation=org_a, name="Ours")
    LocationFactory(organisation=org_b, name="Theirs")
    client.force_login(staff_a)

    rows = export(client, Location, LocationResource)

    assert [row["name"] for row in rows] == ["Ours"]
    assert rows[0]["organisation"] == "alpha"
    assert float(rows[0]["latitude"]) == pytest.approx(own.latitude)
    assert float(rows[0]["longitude"]) == pytest.approx(own.longitude)
    assert "point" not in rows[0]


# --- charge points -------------------------------------------------------------------------------


def chargepoint_row(**overrides) -> dict:
    row = {
        "identity": "CP-IMP-1",
        "organisation": "alpha",
        "location": "",
        "vendor": "ACME",
        "model": "DC150",
        "serial_number": "SN-1",
        "max_power_w": "150000",
        "security_profile": "",
        "password": "",
    }
    row.update(overrides)
    return row


def test_chargepoint_import_hashes_the_password_and_finds_the_location_by_name_or_id(client, staff_a, org_a):
    site = LocationFactory(organisation=org_a, name="Depot")
    client.force_login(staff_a)

    response = preview(
        client,
        ChargePoint,
        [
            chargepoint_row(location="Depot", password=KEY),
            chargepoint_row(identity="CP-IMP-2", location=str(site.pk)),
        ],
    )
    assert row_errors(response) == {}
    assert KEY not in response.content.decode()
    confirm(client, ChargePoint, response)

    with_key, without_key = ChargePoint.objects.order_by("identity")
    assert (with_key.location, without_key.location) == (site, site)
    assert keys.verify_key(KEY, with_key.auth_key_hash)
    assert with_key.security_profile == 1
    assert (without_key.security_profile, without_key.auth_key_hash) == (0, "")


def test_chargepoint_import_preview_reports_bad_rows(client, staff_a, org_a, org_b):
    ChargePointFactory(identity="CP-TAKEN", organisation=org_b)
    LocationFactory(organisation=org_b, name="Their depot")
    client.force_login(staff_a)

    response = preview(
        client,
        ChargePoint,
        [
            chargepoint_row(identity="cp-taken"),
            chargepoint_row(identity="CP-SHORT", password="short"),
            chargepoint_row(identity="CP-THEIRS", organisation="beta"),
            chargepoint_row(identity="CP-NOSITE", location="Their depot"),
            chargepoint_row(identity="CP-NOKEY", security_profile="1"),
        ],
    )

    errors = row_errors(response)
    assert errors[1] == {"__all__": ["A charge point with this OCPP identity already exists."]}
    assert errors[2] == {"password": ["An authorisation key must have 16 to 40 characters."]}
    assert errors[3] == {"organisation": ["You may not import rows for the organisation “beta”."]}
    assert errors[4] == {"location": ["No location named “Their depot”."]}
    assert errors[5] == {"__all__": ["Security profiles 1 and 2 need an authorisation key."]}
    shown_values = [list(row.values) for row in response.context["result"].invalid_rows]
    assert "short" not in shown_values[1]
    assert MASK in shown_values[1]
    assert not re.search(r">\s*short\s*<", response.content.decode())
    assert ChargePoint.objects.count() == 1


def test_chargepoint_import_refuses_a_location_of_another_operator(admin_client, org_a, org_b):
    theirs = LocationFactory(organisation=org_b)

    response = preview(admin_client, ChargePoint, [chargepoint_row(location=str(theirs.pk))])

    assert row_errors(response)[1] == {"location": ["The location belongs to another operator."]}


def test_chargepoint_export_has_no_password_or_hash_and_only_the_users_rows(client, staff_a, org_a, org_b):
    own = ChargePointFactory(organisation=org_a)
    ChargePointFactory(organisation=org_b)
    client.force_login(staff_a)

    export_page = client.get(reverse("admin:stations_chargepoint_export")).content.decode()
    rows = export(client, ChargePoint, ChargePointResource)

    assert [row["identity"] for row in rows] == [own.identity]
    assert "password" not in rows[0]
    assert "auth_key_hash" not in rows[0]
    assert own.auth_key_hash not in str(rows)
    assert rows[0]["organisation"] == "alpha"
    assert rows[0]["location"] == own.location.name
    assert "chargepointresource_password" not in export_page
