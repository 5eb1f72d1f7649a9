"""Files exchanged with chargers: the diagnostics upload endpoint (good link stores once, bad/expired/
used link 403, too large 413), its download in the admin, and firmware files served at their URL."""

from __future__ import annotations

import hashlib
from datetime import timedelta

import pytest
from django.contrib.auth.models import Permission
from django.core.files.uploadedfile import SimpleUploadedFile
from django.urls import reverse

from apps.accounts.models import AuditRecord
from apps.ocpp_gateway import transfers
from apps.ocpp_gateway.commands_catalog import command_send_form
from apps.ocpp_gateway.forms import CommandContext
from apps.ocpp_gateway.management.commands.ocpp_call import EXIT_OFFLINE, ocpp_call
from apps.ocpp_gateway.models import DiagnosticsUpload, FirmwareFile, OcppCommand
from apps.ocpp_gateway.services import command_send
from apps.ocpp_gateway.versions import V16
from cpo import clock
from cpo.exceptions import ValidationFailed
from tests.factories import ChargePointFactory

pytestmark = pytest.mark.django_db

BASE = "http://testserver"
CONTENT = b"2026-01-01T00:00:00Z boot\n" * 100


@pytest.fixture(autouse=True)
def media(settings, tmp_path):
    settings.MEDIA_ROOT = tmp_path
    return tmp_path


def grant(user, *codenames):
    user.user_permissions.add(*Permission.objects.filter(codename__in=codenames))
    return type(user).objects.get(pk=user.pk)


def issue(charge_point=None, **kwargs):
    issued = transfers.diagnostics_upload_issue(
        charge_point=charge_point or ChargePointFactory(), base_url=BASE, **kwargs
    )
    return issued.upload, issued.url.removeprefix(BASE)


def test_put_stores_the_file_once(client, media):
    slot, path = issue()
    response = client.put(f"{path}diag-CP.tar.gz", CONTENT, content_type="application/octet-stream")
    assert response.status_code == 200
    assert response.json() == {
        "status": "stored",
        "filename": "diag-CP.tar.gz",
        "size": len(CONTENT),
        "sha256": hashlib.sha256(CONTENT).hexdigest(),
    }
    slot.refresh_from_db()
    assert slot.uploaded_at is not None and slot.size == len(CONTENT) and slot.uploaded_from == "127.0.0.1"
    assert slot.file.name.startswith(f"diagnostics/{slot.charge_point_id}/")
    assert (media / slot.file.name).read_bytes() == CONTENT

    again = client.put(f"{path}diag-CP.tar.gz", b"other", content_type="application/octet-stream")
    assert again.status_code == 403
    slot.refresh_from_db()
    assert (media / slot.file.name).read_bytes() == CONTENT


def test_multipart_post_stores_the_first_file(client):
    slot, path = issue()
    upload = SimpleUploadedFile("diagnostics.zip", CONTENT, content_type="application/zip")
    response = client.post(path, {"file": upload})
    assert response.status_code == 200
    slot.refresh_from_db()
    assert slot.filename == "diagnostics.zip" and slot.sha256 == hashlib.sha256(CONTENT).hexdigest()


def test_a_hostile_file_name_stays_inside_the_diagnostics_folder(client, media):
    slot, path = issue()
    response = client.put(
        f"{path}..",
        CONTENT,
        content_type="application/octet-stream",
        headers={"Content-Disposition": 'attachment; filename="../../etc/passwd"'},
    )
    assert response.status_code == 200
    slot.refresh_from_db()
    assert slot.file.name.startswith(f"diagnostics/{slot.charge_point_id}/")
    assert slot.file.name.endswith("/diagnostics.bin")
    assert (media / slot.file.name).read_bytes() == CONTENT


def test_raw_post_without_a_name_gets_one(client):
    slot, path = issue()
    response = client.post(path.rstrip("/"), CONTENT, content_type="application/octet-stream")
    assert response.status_code == 200
    slot.refresh_from_db()
    assert slot.filename.startswith("diagnostics-") and slot.size == len(CONTENT)


def test_wrong_or_expired_link_is_403_and_stores_nothing(client):
    _slot, path = issue()
    assert (
        client.put(
            path.replace(path.split("/")[-2], "x" * 43), CONTENT, content_type="application/octet-stream"
        ).status_code
        == 403
    )
    expired, expired_path = issue(ttl_s=60)
    DiagnosticsUpload.objects.filter(pk=expired.pk).update(expires_at=clock.now() - timedelta(seconds=1))
    response = client.put(expired_path, CONTENT, content_type="application/octet-stream")
    assert response.status_code == 403
    assert response.json()["code"] == "upload_refused"
    assert not DiagnosticsUpload.objects.filter(uploaded_at__isnull=False).exists()


def test_too_large_is_413_and_the_link_stays_usable(client, settings):
    settings.CPO_DIAGNOSTICS_MAX_BYTES = 100
    slot, path = issue()
    response = client.put(path, CONTENT, content_type="application/octet-stream")
    assert response.status_code == 413
    assert response.json()["code"] == "payload_too_large"
    multipart = client.post(path, {"file": SimpleUploadedFile("d.zip", CONTENT)})
    assert multipart.status_code == 413
    slot.refresh_from_db()
    assert slot.uploaded_at is None
    assert client.put(path, CONTENT[:100], content_type="application/octet-stream").status_code == 200


def test_spool_stops_at_the_limit_without_a_declared_length():
    with pytest.raises(transfers.PayloadTooLarge):
        transfers.spool(iter([b"a" * 60, b"b" * 60]), limit=100)
    content, size, digest = transfers.spool(iter([b"a" * 60, b"b" * 40]), limit=100)
    with content:
        assert size == 100 and content.read() == b"a" * 60 + b"b" * 40
    assert digest == hashlib.sha256(b"a" * 60 + b"b" * 40).hexdigest()


def test_only_put_and_post_are_accepted(client):
    _slot, path = issue()
    assert client.get(path).status_code == 405


def test_get_diagnostics_command_names_a_working_upload_link(client, staff_a):
    cp = ChargePointFactory(organisation=staff_a.organisation, identity="CP-DIAG")
    form = V16.catalogue["GetDiagnostics"].form_class(
        {"retries": "1"}, context=CommandContext(charge_point=cp, actor=staff_a, base_url=BASE)
    )
    assert form.is_valid(), form.errors
    command = command_send_form(form=form)  # offline: recorded, not sent; the link exists all the same
    slot = DiagnosticsUpload.objects.get(command=command)
    assert slot.charge_point == cp and slot.requested_by == staff_a
    location = command.payload["location"]
    assert location.startswith(f"{BASE}/ocpp/uploads/diagnostics/") and location.endswith("/")
    assert (
        client.put(location.removeprefix(BASE) + "log.txt", b"log", content_type="text/plain").status_code
        == 200
    )


def test_refused_get_diagnostics_leaves_no_upload_link(staff_a):
    cp = ChargePointFactory(organisation=staff_a.organisation, ocpp_protocol="ocpp2.1")
    form = V16.catalogue["GetDiagnostics"].form_class(
        {}, context=CommandContext(charge_point=cp, actor=staff_a, base_url=BASE)
    )
    assert form.is_valid(), form.errors
    with pytest.raises(Exception, match=r"GetDiagnostics is not an OCPP 2\.1 command"):
        command_send_form(form=form)
    assert not DiagnosticsUpload.objects.exists()


def test_diagnostics_download_in_the_admin_is_scoped(client, staff_a, staff_b):
    slot, path = issue(ChargePointFactory(organisation=staff_a.organisation))
    client.put(f"{path}d.log", CONTENT, content_type="text/plain")
    url = reverse("admin:ocpp_gateway_diagnosticsupload_download", args=[slot.pk])
    client.force_login(grant(staff_a, "view_diagnosticsupload"))
    response = client.get(url)
    assert response.status_code == 200
    assert b"".join(response.streaming_content) == CONTENT
    assert response["Content-Disposition"].startswith('attachment; filename="d.log"')
    client.force_login(grant(staff_b, "view_diagnosticsupload"))
    assert client.get(url).status_code == 404


# --- firmware ------------------------------------------------------------------------------------

FIRMWARE = b"\x7fELF firmware image" * 64


def upload_firmware(client, staff, **fields):
    data = {
        "organisation": staff.organisation_id,
        "vendor": "ACME",
        "model": "AC22",
        "version": "2.1.0",
        "notes": "",
        "file": SimpleUploadedFile("acme ac22 v2.1.0.bin", FIRMWARE),
        **fields,
    }
    return client.post(reverse("admin:ocpp_gateway_firmwarefile_add"), data)


def test_firmware_uploaded_in_the_admin_is_fingerprinted_and_served(client, staff_a):
    client.force_login(grant(staff_a, "add_firmwarefile", "view_firmwarefile", "change_firmwarefile"))
    response = upload_firmware(client, staff_a)
    assert response.status_code == 302, response.context["adminform"].form.errors
    firmware = FirmwareFile.objects.get()
    assert firmware.sha256 == hashlib.sha256(FIRMWARE).hexdigest() and firmware.size == len(FIRMWARE)
    assert firmware.filename == "acme ac22 v2.1.0.bin"
    assert AuditRecord.objects.filter(action="firmwarefile.create", actor=staff_a).exists()

    url = transfers.firmware_url(firmware=firmware, base_url=BASE).removeprefix(BASE)
    assert url == f"/ocpp/firmware/{firmware.public_id}/acme_ac22_v2.1.0.bin"
    client.logout()  # chargers have no session
    download = client.get(url)
    assert download.status_code == 200
    assert b"".join(download.streaming_content) == FIRMWARE
    assert download["ETag"] == f'"{firmware.sha256}"'
    assert client.head(url).status_code == 200


def test_unknown_firmware_id_or_name_is_404(client, staff_a):
    client.force_login(grant(staff_a, "add_firmwarefile", "view_firmwarefile", "change_firmwarefile"))
    upload_firmware(client, staff_a)
    firmware = FirmwareFile.objects.get()
    client.logout()
    assert (
        client.get("/ocpp/firmware/00000000-0000-4000-8000-000000000000/acme_ac22_v2.1.0.bin").status_code
        == 404
    )
    assert client.get(f"/ocpp/firmware/{firmware.public_id}/other.bin").status_code == 404
    assert client.get("/ocpp/firmware/not-a-uuid/acme_ac22_v2.1.0.bin").status_code == 404


def test_firmware_file_cannot_be_replaced(client, staff_a):
    client.force_login(grant(staff_a, "add_firmwarefile", "view_firmwarefile", "change_firmwarefile"))
    upload_firmware(client, staff_a)
    firmware = FirmwareFile.objects.get()
    page = client.get(reverse("admin:ocpp_gateway_firmwarefile_change", args=[firmware.pk]))
    assert 'type="file"' not in page.content.decode()


def test_same_version_twice_is_refused_with_a_clear_message(client, staff_a):
    client.force_login(grant(staff_a, "add_firmwarefile", "view_firmwarefile", "change_firmwarefile"))
    upload_firmware(client, staff_a)
    response = upload_firmware(client, staff_a)
    assert response.status_code == 200
    assert "already has this firmware version" in response.content.decode()
    assert FirmwareFile.objects.count() == 1


def test_firmware_of_another_operator_cannot_be_chosen(staff_a, staff_b):
    theirs = FirmwareFile.objects.create(
        organisation=staff_b.organisation,
        version="1",
        file="firmware/x/a.bin",
        filename="a.bin",
        sha256="0" * 64,
    )
    cp = ChargePointFactory(organisation=staff_a.organisation)
    form = V16.catalogue["UpdateFirmware"].form_class(
        {"firmware": theirs.pk, "retrieve_date": "2026-12-01T10:00"},
        context=CommandContext(charge_point=cp, actor=staff_a, base_url=BASE),
    )
    assert not form.is_valid()
    assert "firmware" in form.errors


def test_ocpp_call_gets_the_same_upload_link_as_the_admin(settings, client):
    """The upload slot is the command service's work, not the admin form's: GetDiagnostics from the
    shell without a location is sent with a single-use link of ours, tied to the command."""
    settings.CPO_PUBLIC_BASE_URL = BASE + "/"
    cp = ChargePointFactory(identity="CP-SHELL")
    result = ocpp_call(identity="CP-SHELL", action="GetDiagnostics", payload_json='{"retries": 1}')
    assert result.exit_code == EXIT_OFFLINE  # sent the same way; this charger is just not connected
    command = OcppCommand.objects.get(charge_point=cp, action="GetDiagnostics")
    slot = DiagnosticsUpload.objects.get(command=command)
    assert slot.charge_point == cp and command.payload["retries"] == 1
    assert command.payload["location"].startswith(f"{BASE}/ocpp/uploads/diagnostics/")
    assert client.put(command.payload["location"].removeprefix(BASE) + "d.log", CONTENT).status_code == 200


def test_a_v201_get_log_gets_its_remote_location_filled_in(settings):
    settings.CPO_PUBLIC_BASE_URL = BASE
    cp = ChargePointFactory(ocpp_protocol="ocpp2.0.1")
    command = command_send(
        charge_point=cp, action="GetLog", payload={"logType": "DiagnosticsLog", "log": {}}, timeout_s=5
    )
    assert command.payload["log"]["remoteLocation"].startswith(f"{BASE}/ocpp/uploads/diagnostics/")
    assert command.payload["requestId"] == command.pk
    assert DiagnosticsUpload.objects.get(command=command).charge_point == cp


def test_an_explicit_location_is_sent_as_given_and_issues_no_slot(settings):
    settings.CPO_PUBLIC_BASE_URL = ""
    cp = ChargePointFactory()
    command = command_send(
        charge_point=cp, action="GetDiagnostics", payload={"location": "ftp://logs.example.com/"}, timeout_s=5
    )
    assert command.payload["location"] == "ftp://logs.example.com/"
    assert not DiagnosticsUpload.objects.exists()


def test_an_upload_link_without_a_known_base_url_is_refused_and_leaves_nothing(settings):
    settings.CPO_PUBLIC_BASE_URL = ""
    cp = ChargePointFactory()
    with pytest.raises(ValidationFailed) as refused:
        command_send(charge_point=cp, action="GetDiagnostics", payload={}, timeout_s=5)
    assert refused.value.code == "public_base_url_unknown"
    assert not OcppCommand.objects.exists() and not DiagnosticsUpload.objects.exists()
