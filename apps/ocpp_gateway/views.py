"""HTTP endpoints chargers call: the diagnostics upload (GetDiagnostics) and the firmware download
(UpdateFirmware). Both are authorised by an unguessable URL, not by a login: chargers have no session,
and FTP is not offered."""

from __future__ import annotations

import base64
import re
from typing import Any
from uuid import UUID

from django.http import FileResponse, Http404, HttpRequest, HttpResponse, JsonResponse
from django.utils.translation import gettext as _
from django.views.decorators.csrf import csrf_exempt
from django.views.decorators.http import require_http_methods

from apps.ocpp_gateway import transfers
from apps.ocpp_gateway.models import FirmwareFile
from cpo.exceptions import ApplicationError, PermissionDenied, ValidationFailed

_DISPOSITION_NAME = re.compile(r'filename\*?=(?:UTF-8\'\')?"?([^";]+)"?', re.IGNORECASE)


def _error(exc: ApplicationError) -> JsonResponse:
    return JsonResponse(exc.as_dict(), status=exc.http_status)


def _declared_name(request: HttpRequest) -> str:
    match = _DISPOSITION_NAME.search(request.headers.get("Content-Disposition", ""))
    return match.group(1).strip() if match else ""


@csrf_exempt
@require_http_methods(["PUT", "POST"])
def diagnostics_upload(request: HttpRequest, token: str, filename: str = "") -> HttpResponse:
    """Store the diagnostics file a charger uploads: the raw body of a PUT or POST, or the first file of
    a multipart POST. 403 for an unknown, used or expired link; 413 above CPO_DIAGNOSTICS_MAX_BYTES."""
    try:
        transfers.diagnostics_upload_check(token=token)
    except PermissionDenied as exc:
        return _error(exc)
    limit = transfers.diagnostics_max_bytes()
    declared = request.META.get("CONTENT_LENGTH") or ""
    if declared.isdigit() and int(declared) > limit:
        return _error(
            transfers.PayloadTooLarge(_("The file exceeds the limit of {limit} bytes.").format(limit=limit))
        )
    try:
        if request.method == "POST" and (request.content_type or "").startswith("multipart/"):
            upload: Any = next(iter(request.FILES.values()), None)
            if upload is None:
                return _error(ValidationFailed(_("The form holds no file."), code="no_file"))
            name = filename or upload.name or ""
            spooled = transfers.spool(upload.chunks(transfers.CHUNK), limit=limit)
        else:
            name = filename or _declared_name(request)
            spooled = transfers.spool(iter(lambda: request.read(transfers.CHUNK), b""), limit=limit)
        content, size, sha256 = spooled
        with content:
            slot = transfers.diagnostics_upload_store(
                token=token,
                filename=name,
                content=content,
                size=size,
                sha256=sha256,
                remote_addr=request.META.get("REMOTE_ADDR"),
            )
    except ApplicationError as exc:
        return _error(exc)
    return JsonResponse(
        {"status": "stored", "filename": slot.filename, "size": slot.size, "sha256": slot.sha256}
    )


@require_http_methods(["GET", "HEAD"])
def firmware_download(request: HttpRequest, public_id: UUID, filename: str) -> FileResponse:
    """Serve a firmware file to a charger. 404 unless both the id and the file name match."""
    firmware = FirmwareFile.objects.filter(public_id=public_id).first()
    stored = (firmware.file.name or "") if firmware is not None else ""
    if firmware is None or not stored or stored.rsplit("/", 1)[-1] != filename:
        raise Http404("No such firmware file.")
    try:
        handle = firmware.file.storage.open(stored, "rb")
    except FileNotFoundError as exc:
        raise Http404("No such firmware file.") from exc
    response = FileResponse(
        handle, as_attachment=True, filename=filename, content_type="application/octet-stream"
    )
    if firmware.sha256:
        response["ETag"] = f'"{firmware.sha256}"'
        response["Digest"] = "sha-256=" + base64.b64encode(bytes.fromhex(firmware.sha256)).decode()
    return response
