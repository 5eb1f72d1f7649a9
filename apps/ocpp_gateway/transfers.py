"""Files exchanged with chargers over HTTP: diagnostics they upload (1.6 GetDiagnostics, 2.0.1 GetLog)
and firmware images they download (UpdateFirmware, both versions).

A GetDiagnostics or GetLog command carries an upload URL (GetLog: log.remoteLocation) with a random token;
only the token's SHA-256 is stored, and it admits one upload before it expires. Firmware images are
served at a URL containing a random UUID, which chargers can fetch without credentials (they have none
for plain HTTP downloads).

Settings (with defaults): CPO_PUBLIC_BASE_URL (read by `cpo.public_url.public_base_url`: "" = the base URL
of the admin request that composed the command), CPO_DIAGNOSTICS_MAX_BYTES (50 MiB),
CPO_DIAGNOSTICS_UPLOAD_TTL_S (24 hours).
"""

from __future__ import annotations

import hashlib
import secrets
import tempfile
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import timedelta
from typing import IO, Any

from django.core.files import File
from django.db import transaction
from django.urls import reverse
from django.utils.translation import gettext as _

from apps.ocpp_gateway import conf
from apps.ocpp_gateway.models import DiagnosticsUpload, FirmwareFile, OcppCommand
from apps.stations.models import ChargePoint
from cpo import clock
from cpo.exceptions import ApplicationError, PermissionDenied

CHUNK = 64 * 1024


class PayloadTooLarge(ApplicationError):
    """An upload larger than CPO_DIAGNOSTICS_MAX_BYTES (HTTP 413)."""

    code = "payload_too_large"
    http_status = 413


def diagnostics_max_bytes() -> int:
    return int(conf.get("CPO_DIAGNOSTICS_MAX_BYTES", 50 * 1024 * 1024))


def diagnostics_upload_ttl_s() -> int:
    return int(conf.get("CPO_DIAGNOSTICS_UPLOAD_TTL_S", 24 * 3600))


def _token_hash(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


@dataclass(frozen=True, slots=True)
class IssuedUpload:
    upload: DiagnosticsUpload
    url: str


def diagnostics_upload_new(
    *,
    charge_point: ChargePoint,
    base_url: str,
    actor: Any = None,
    command_id: int | None = None,
    ttl_s: int | None = None,
) -> IssuedUpload:
    """An upload slot for `charge_point` (not saved yet: `command_send` stores it with the GetDiagnostics
    or GetLog command `command_id` that announces it) and its URL (the only place the token appears)."""
    token = secrets.token_urlsafe(32)
    now = clock.now()
    upload = DiagnosticsUpload(
        charge_point=charge_point,
        command_id=command_id,
        token_hash=_token_hash(token),
        created_at=now,
        expires_at=now + timedelta(seconds=ttl_s if ttl_s is not None else diagnostics_upload_ttl_s()),
        requested_by=actor if getattr(actor, "pk", None) else None,
    )
    return IssuedUpload(upload=upload, url=diagnostics_upload_url(base_url=base_url, token=token))


def diagnostics_upload_issue(
    *, charge_point: ChargePoint, base_url: str, actor: Any = None, ttl_s: int | None = None
) -> IssuedUpload:
    """Create an upload slot for `charge_point` tied to no command and return it with its URL."""
    issued = diagnostics_upload_new(charge_point=charge_point, base_url=base_url, actor=actor, ttl_s=ttl_s)
    issued.upload.save()
    return issued


def diagnostics_upload_url(*, base_url: str, token: str) -> str:
    """The location a GetDiagnostics or GetLog command names: chargers PUT or POST their file there (PUT
    may append the file name)."""
    return f"{base_url.rstrip('/')}{reverse('ocpp_gateway:diagnostics-upload', kwargs={'token': token})}"


def diagnostics_upload_check(*, token: str) -> DiagnosticsUpload:
    """The open slot for `token`. PermissionDenied when the token is unknown, used or expired (one
    answer for all three: a caller without the token learns nothing)."""
    upload = DiagnosticsUpload.objects.filter(token_hash=_token_hash(token)).first()
    if upload is None or upload.uploaded_at is not None or upload.expires_at <= clock.now():
        raise PermissionDenied(_("This upload link is unknown, used or expired."), code="upload_refused")
    return upload


def spool(chunks: Iterable[bytes], *, limit: int) -> tuple[IO[bytes], int, str]:
    """Copy `chunks` to a temporary file, hashing as it goes. PayloadTooLarge as soon as `limit` bytes
    are exceeded. Returns (file positioned at 0, size, sha256)."""
    digest, size = hashlib.sha256(), 0
    out = tempfile.TemporaryFile()  # noqa: SIM115 - handed to the caller, who closes it
    try:
        for chunk in chunks:
            size += len(chunk)
            if size > limit:
                raise PayloadTooLarge(_("The file exceeds the limit of {limit} bytes.").format(limit=limit))
            digest.update(chunk)
            out.write(chunk)
    except BaseException:
        out.close()
        raise
    out.seek(0)
    return out, size, digest.hexdigest()


@transaction.atomic
def diagnostics_upload_store(
    *, token: str, filename: str, content: IO[bytes], size: int, sha256: str, remote_addr: str | None = None
) -> DiagnosticsUpload:
    """Store an uploaded diagnostics file in the slot named by `token`. The slot row is locked, so of two
    concurrent uploads only one is stored; the other gets PermissionDenied like any reused token."""
    slot = diagnostics_upload_check(token=token)
    slot = DiagnosticsUpload.objects.select_for_update(no_key=True).get(pk=slot.pk)
    if slot.uploaded_at is not None:
        raise PermissionDenied(_("This upload link is unknown, used or expired."), code="upload_refused")
    name = (filename or slot.announced_filename or f"diagnostics-{clock.now():%Y%m%dT%H%M%SZ}.bin")[:255]
    slot.file.save(name, File(content), save=False)
    slot.filename, slot.size, slot.sha256 = name, size, sha256
    slot.uploaded_at, slot.uploaded_from = clock.now(), remote_addr or None
    slot.save(update_fields=["file", "filename", "size", "sha256", "uploaded_at", "uploaded_from"])
    return slot


def diagnostics_announced(*, command: OcppCommand) -> None:
    """A charger answered GetDiagnostics (fileName) or GetLog (filename): keep the file name it announced
    (none: nothing to upload)."""
    response = command.response or {}
    file_name = response.get("fileName") or response.get("filename") or ""
    if file_name:
        DiagnosticsUpload.objects.filter(command=command).update(announced_filename=str(file_name)[:255])


# --- firmware ------------------------------------------------------------------------------------


def firmware_fingerprint(*, firmware: FirmwareFile) -> FirmwareFile:
    """Fill in file name, size and SHA-256 from the file about to be (or already) stored. Call before
    saving a new or replaced file."""
    digest, size = hashlib.sha256(), 0
    upload = firmware.file
    upload.open("rb")
    try:
        for chunk in upload.chunks(CHUNK):
            digest.update(chunk)
            size += len(chunk)
    finally:
        upload.seek(0)
    firmware.filename = (upload.name or "firmware.bin").rsplit("/", 1)[-1][:255]
    firmware.size, firmware.sha256 = size, digest.hexdigest()
    return firmware


def firmware_url(*, firmware: FirmwareFile, base_url: str) -> str:
    """The absolute URL chargers download `firmware` from."""
    path = reverse(
        "ocpp_gateway:firmware-download",
        kwargs={"public_id": firmware.public_id, "filename": (firmware.file.name or "").rsplit("/", 1)[-1]},
    )
    return f"{base_url.rstrip('/')}{path}"
