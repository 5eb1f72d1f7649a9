"""Admin of the OCPP gateway: sending commands to a charger (typed forms, outcome shown at once), the
command and message logs, failed messages and their replay, firmware files, diagnostics uploads and
local authorisation lists.

The message log grows by millions of rows: its changelist never counts the whole table
(`show_full_result_count = False`, a paginator that stops counting at a cap) and offers only filters
that use indexes (direction, action and charge point from fixed lists, date ranges on `at`).
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from functools import cached_property
from typing import Any

from django.contrib import admin, messages
from django.contrib.admin import helpers
from django.core.exceptions import PermissionDenied
from django.core.paginator import Paginator
from django.db.models import Count, Q, QuerySet
from django.http import FileResponse, Http404, HttpRequest, HttpResponse, HttpResponseRedirect
from django.template.response import TemplateResponse
from django.urls import path, reverse
from django.utils.html import format_html
from django.utils.text import Truncator
from django.utils.translation import gettext_lazy as _
from django.utils.translation import ngettext
from ocpp.v16.enums import Action as V16Action
from ocpp.v201.enums import Action as V201Action

from apps.accounts.models import IdToken
from apps.ocpp_gateway import conf, localauth, presence, transfers
from apps.ocpp_gateway.choices import FINAL_COMMAND_STATUSES, CommandStatus
from apps.ocpp_gateway.commands_catalog import catalogue_for, command_send_form
from apps.ocpp_gateway.forms import CommandContext, FirmwareFileAdminForm, LocalAuthListAdminForm
from apps.ocpp_gateway.models import (
    DiagnosticsUpload,
    FirmwareFile,
    LocalAuthList,
    LocalAuthListMember,
    OcppCommand,
    OcppFailedMessage,
    OcppMessage,
)
from apps.ocpp_gateway.replay import failed_message_replay
from apps.ocpp_gateway.services import chargepoint_accept, command_wait
from apps.stations.models import ChargePoint
from cpo.admin import BaseModelAdmin, BaseTabularInline, ReadOnlyAdminMixin
from cpo.exceptions import ApplicationError
from cpo.public_url import public_base_url

# Outcomes that are good news for the operator when the charger answers with them.
GOOD_ANSWERS = frozenset({"Accepted", "Unlocked"})
# OCPP 2.0.1 answers that report per variable instead of one status.
RESULT_LISTS = ("getVariableResult", "setVariableResult")


def is_good_answer(answer: dict[str, Any]) -> bool:
    """Whether an answer is plain good news: its status (or every per-variable status) is a good one,
    or it has no status at all."""
    statuses = [str(answer["status"])] if "status" in answer else []
    for name in RESULT_LISTS:
        statuses += [str(result.get("attributeStatus")) for result in answer.get(name) or []]
    return all(status in GOOD_ANSWERS for status in statuses)


def admin_command_wait_s() -> float:
    """How long the send page waits for the charger's answer before showing what it has."""
    return float(conf.get("CPO_ADMIN_COMMAND_WAIT_S", 5))


def _timestamp(value: float) -> datetime:
    return datetime.fromtimestamp(value, tz=UTC)


def accept_url(charge_point: ChargePoint | int) -> str:
    pk = charge_point.pk if isinstance(charge_point, ChargePoint) else charge_point
    return reverse("admin:ocpp_gateway_ocppcommand_accept", args=[pk])


def send_command_url(charge_point: ChargePoint | int) -> str:
    """The admin page that sends a command to `charge_point` (for links from other admin pages)."""
    pk = charge_point.pk if isinstance(charge_point, ChargePoint) else charge_point
    return reverse("admin:ocpp_gateway_ocppcommand_send", args=[pk])


def pretty_json(value: Any) -> str:
    return format_html("<pre>{}</pre>", json.dumps(value, indent=2, ensure_ascii=False, sort_keys=True))


# --- list helpers for big tables -----------------------------------------------------------------


class CappedCountPaginator(Paginator):
    """Counts at most CAP rows (a bounded index scan instead of COUNT(*) over millions); beyond that the
    changelist shows CAP results and further pages are reached by narrowing the filters."""

    CAP = 10_000

    @cached_property
    def count(self) -> int:
        return self.object_list[: self.CAP].count()


class ChargePointListFilter(admin.SimpleListFilter):
    """Filter by charge point, choosing among the user's chargers (not a DISTINCT over the big table).
    The parameter is the one a link from a charge point page uses: ?charge_point__id__exact=<pk>."""

    title = _("charge point")
    parameter_name = "charge_point__id__exact"
    MAX_LISTED = 100

    def lookups(self, request: HttpRequest, model_admin: Any) -> Any:
        chargers = ChargePoint.objects.for_actor(request.user).order_by("identity")
        return [(cp.pk, cp.identity) for cp in chargers.only("pk", "identity")[: self.MAX_LISTED]]

    def queryset(self, request: HttpRequest, queryset: QuerySet) -> QuerySet:
        value = self.value()
        if value and str(value).isdigit():
            return queryset.filter(charge_point_id=int(value))
        return queryset


class ActionListFilter(admin.SimpleListFilter):
    """Filter by OCPP action, from the protocols' lists of actions (not a DISTINCT over the big table)."""

    title = _("action")
    parameter_name = "action"

    def lookups(self, request: HttpRequest, model_admin: Any) -> Any:
        actions = {a.value for a in V16Action} | {a.value for a in V201Action}
        return [(action, action) for action in sorted(actions)]

    def queryset(self, request: HttpRequest, queryset: QuerySet) -> QuerySet:
        return queryset.filter(action=self.value()) if self.value() else queryset


def search_by_identity_or_message_id(request: HttpRequest, queryset: QuerySet, term: str) -> QuerySet:
    """A search term is a charger identity (any case) or an exact OCPP message id."""
    term = term.strip()
    if not term:
        return queryset
    charger_ids = list(
        ChargePoint.objects.for_actor(request.user).filter(identity__iexact=term).values_list("pk", flat=True)
    )
    if charger_ids:
        return queryset.filter(charge_point_id__in=charger_ids)
    return queryset.filter(unique_id=term)


def charge_point_link(charge_point_id: int | None, label: Any) -> str:
    if charge_point_id is None:
        return str(label or "-")
    return format_html(
        '<a href="{}">{}</a>', reverse("admin:stations_chargepoint_change", args=[charge_point_id]), label
    )


# --- commands ------------------------------------------------------------------------------------


@admin.register(OcppCommand)
class OcppCommandAdmin(ReadOnlyAdminMixin, BaseModelAdmin):
    """The commands sent to chargers, and the page that sends one (…/send/<charge point id>/)."""

    list_display = (
        "created_at",
        "charger",
        "action",
        "status",
        "answer_summary",
        "completed_at",
        "requested_by",
        "source",
    )
    list_filter = ("status", ActionListFilter, "source", "created_at", ChargePointListFilter)
    search_fields = ("unique_id",)
    search_help_text = _("charger identity or message id")
    list_select_related = ("charge_point", "requested_by")
    show_full_result_count = False
    paginator = CappedCountPaginator
    fields = (
        "charge_point",
        "action",
        "status",
        "payload_pretty",
        "response_pretty",
        "error_code",
        "error_description",
        "unique_id",
        "created_at",
        "sent_at",
        "completed_at",
        "deadline",
        "requested_by",
        "source",
    )
    readonly_fields = fields

    @admin.display(description=_("charge point"), ordering="charge_point__identity")
    def charger(self, obj: OcppCommand) -> str:
        return charge_point_link(obj.charge_point_id, obj.charge_point.identity)

    @admin.display(description=_("answer"))
    def answer_summary(self, obj: OcppCommand) -> str:
        if obj.status == CommandStatus.CALL_ERROR:
            return obj.error_code
        if obj.response:
            return Truncator(json.dumps(obj.response, ensure_ascii=False)).chars(80)
        return "-"

    @admin.display(description=_("payload"))
    def payload_pretty(self, obj: OcppCommand) -> str:
        return pretty_json(obj.payload)

    @admin.display(description=_("answer"))
    def response_pretty(self, obj: OcppCommand) -> str:
        return pretty_json(obj.response) if obj.response is not None else "-"

    def get_search_results(
        self, request: HttpRequest, queryset: QuerySet, search_term: str
    ) -> tuple[QuerySet, bool]:
        return search_by_identity_or_message_id(request, queryset, search_term), False

    def get_urls(self) -> list[Any]:
        return [
            path(
                "send/<int:charge_point_id>/",
                self.admin_site.admin_view(self.send_view),
                name="ocpp_gateway_ocppcommand_send",
            ),
            path(
                "accept/<int:charge_point_id>/",
                self.admin_site.admin_view(self.accept_view),
                name="ocpp_gateway_ocppcommand_accept",
            ),
            *super().get_urls(),
        ]

    def has_send_permission(self, request: HttpRequest) -> bool:
        return request.user.has_perm(f"{self.opts.app_label}.add_{self.opts.model_name}")

    def change_view(
        self,
        request: HttpRequest,
        object_id: str,
        form_url: str = "",
        extra_context: dict[str, Any] | None = None,
    ) -> HttpResponse:
        obj = self.get_object(request, object_id)
        extra = {**(extra_context or {})}
        if self.has_send_permission(request):
            extra["send_url"] = send_command_url(obj.charge_point_id)
            extra["send_to"] = obj.charge_point.identity
        return super().change_view(request, object_id, form_url, extra)

    def changelist_view(
        self, request: HttpRequest, extra_context: dict[str, Any] | None = None
    ) -> HttpResponse:
        extra = {**(extra_context or {})}
        charger_id = request.GET.get(ChargePointListFilter.parameter_name, "")
        if charger_id.isdigit() and self.has_send_permission(request):
            charger = ChargePoint.objects.for_actor(request.user).filter(pk=int(charger_id)).first()
            if charger is not None:
                extra["send_url"], extra["send_to"] = send_command_url(charger), charger.identity
        return super().changelist_view(request, extra)

    def accept_view(self, request: HttpRequest, charge_point_id: int) -> HttpResponse:
        """Accept a Pending charge point and give its key to the connection shown on this page (address,
        what its BootNotification said, when), and to no other: the form carries that connection's epoch,
        and if the charger's connection changed in between nothing is accepted or sent."""
        charge_point = ChargePoint.objects.for_actor(request.user).filter(pk=charge_point_id).first()
        if charge_point is None:
            raise Http404(_("No charge point with id {id} that you may see.").format(id=charge_point_id))
        if not request.user.has_perm("stations.change_chargepoint"):
            raise PermissionDenied
        holder = presence.lookup(charge_point.identity)
        if request.method == "POST":
            raw_epoch = request.POST.get("epoch", "")
            try:
                _cp, key, command = chargepoint_accept(
                    charge_point=charge_point,
                    actor=request.user,
                    epoch=int(raw_epoch) if raw_epoch.isdigit() else 0,
                )
            except ApplicationError as exc:
                messages.error(request, exc.detail)
                return HttpResponseRedirect(request.path)
            sent = (
                _("sent to the connection shown (command {id})").format(id=command.pk)
                if command is not None and command.status != CommandStatus.CHARGER_OFFLINE
                else _("the charger is offline: configure it by hand")
            )
            messages.warning(
                request,
                format_html(
                    _(
                        "{identity} accepted. Its new authorisation key, {sent}: <code>{key}</code> "
                        "It is not shown again."
                    ),
                    identity=charge_point.identity,
                    sent=sent,
                    key=key,
                ),
            )
            return HttpResponseRedirect(reverse("admin:stations_chargepoint_change", args=[charge_point.pk]))
        page = {
            **self.admin_site.each_context(request),
            "title": _("Accept {identity} and give it a new key").format(identity=charge_point.identity),
            "opts": self.opts,
            "charge_point": charge_point,
            "holder": holder,
            "connected_at": _timestamp(holder.connected_at) if holder else None,
            "booted_at": _timestamp(holder.booted_at) if holder and holder.booted_at else None,
        }
        return TemplateResponse(request, "admin/ocpp_gateway/chargepoint_accept.html", page)

    def send_view(self, request: HttpRequest, charge_point_id: int) -> HttpResponse:
        """Choose a command, fill its form, send it, wait a few seconds and show the outcome."""
        charge_point = ChargePoint.objects.for_actor(request.user).filter(pk=charge_point_id).first()
        if charge_point is None:
            raise Http404(_("No charge point with id {id} that you may see.").format(id=charge_point_id))
        if not self.has_send_permission(request):
            raise PermissionDenied
        catalogue = catalogue_for(charge_point)
        action = request.POST.get("action") or request.GET.get("action") or ""
        spec = catalogue.get(action)
        form = None
        if spec is not None:
            try:
                base_url = public_base_url(request)
            except ValueError:
                base_url = None
            context = CommandContext(charge_point=charge_point, actor=request.user, base_url=base_url)
            if request.method == "POST":
                form = spec.form_class(request.POST, context=context)
                if form.is_valid():
                    try:
                        command = command_send_form(form=form, source="admin")
                    except ApplicationError as exc:
                        form.add_error(None, exc.detail)
                    else:
                        wait = min(admin_command_wait_s(), form.deadline() or conf.command_timeout_s())
                        self.report_outcome(
                            request, command, command_wait(command_id=command.pk, timeout_s=wait)
                        )
                        for note in form.notes:
                            messages.warning(request, note)
                        return HttpResponseRedirect(
                            reverse("admin:ocpp_gateway_ocppcommand_change", args=[command.pk])
                        )
            else:
                # Links from other pages may pre-fill fields (the charge point page:
                # ?action=ChangeConfiguration&key=HeartbeatInterval); nothing is sent before submitting.
                form = spec.form_class(context=context)
                form.initial.update(
                    {
                        name: request.GET[name]
                        for name in form.fields
                        if name in request.GET and name != "action"
                    }
                )
        recent = (
            OcppCommand.objects.filter(charge_point=charge_point)
            .select_related("requested_by")
            .order_by("-created_at")[:10]
        )
        admin_form = helpers.AdminForm(form, [(None, {"fields": list(form.fields)})], {}) if form else None
        media = self.media + form.media if form is not None else self.media
        page = {
            **self.admin_site.each_context(request),
            "title": _("Send a command to {identity}").format(identity=charge_point.identity),
            "opts": self.opts,
            "charge_point": charge_point,
            "catalogue": list(catalogue.values()),
            "spec": spec,
            "form": form,
            "adminform": admin_form,
            "errors": helpers.AdminErrorList(form, []) if form is not None and form.is_bound else None,
            "recent": recent,
            "media": media,
            "has_view_permission": self.has_view_permission(request),
            "online": charge_point.is_online,
        }
        return TemplateResponse(request, "admin/ocpp_gateway/command_send.html", page)

    def report_outcome(self, request: HttpRequest, command: OcppCommand, outcome: dict[str, Any]) -> None:
        """One message saying how the command ended (or that it is still under way)."""
        status, who = outcome["status"], command.charge_point.identity
        name = {"action": command.action, "identity": who}
        if status == CommandStatus.ANSWERED:
            answer = outcome.get("response") or {}
            text = _("{action} to {identity}: answered {answer}").format(
                answer=json.dumps(answer, ensure_ascii=False), **name
            )
            level = messages.SUCCESS if is_good_answer(answer) else messages.WARNING
            messages.add_message(request, level, text)
        elif status == CommandStatus.CALL_ERROR:
            messages.error(
                request,
                _("{action} to {identity}: the charger answered with the error {code}: {description}").format(
                    code=outcome.get("error_code") or "-",
                    description=outcome.get("error_description") or "-",
                    **name,
                ),
            )
        elif status == CommandStatus.TIMEOUT:
            messages.error(
                request, _("{action} to {identity}: no answer before the deadline.").format(**name)
            )
        elif status == CommandStatus.CHARGER_OFFLINE:
            messages.error(
                request, _("{action} not sent: {identity} is offline (charger_offline).").format(**name)
            )
        elif status == CommandStatus.CHARGER_DISCONNECTED:
            messages.error(
                request,
                _(
                    "{action} to {identity}: the charger disconnected before answering "
                    "(charger_disconnected)."
                ).format(**name),
            )
        elif status not in FINAL_COMMAND_STATUSES:
            messages.info(
                request,
                _(
                    "{action} sent to {identity}; no answer yet. This record shows the answer "
                    "when it arrives (reload the page)."
                ).format(**name),
            )


# --- message log ---------------------------------------------------------------------------------


@admin.register(OcppMessage)
class OcppMessageAdmin(ReadOnlyAdminMixin, BaseModelAdmin):
    """Every OCPP frame in and out, per charger. Fast on millions of rows: no full count, indexed filters."""

    list_display = ("at", "charger", "direction", "message_type", "action", "unique_id", "frame_preview")
    list_filter = ("direction", ActionListFilter, "at", ChargePointListFilter)
    search_fields = ("unique_id",)
    search_help_text = _("charger identity or message id")
    show_full_result_count = False
    paginator = CappedCountPaginator
    list_per_page = 100
    fields = (
        "at",
        "charge_point",
        "identity",
        "direction",
        "message_type",
        "action",
        "unique_id",
        "frame_pretty",
    )
    readonly_fields = fields

    @admin.display(description=_("charge point"), ordering="identity")
    def charger(self, obj: OcppMessage) -> str:
        return charge_point_link(obj.charge_point_id, obj.identity)

    @admin.display(description=_("frame"))
    def frame_preview(self, obj: OcppMessage) -> str:
        return Truncator(obj.frame).chars(120)

    @admin.display(description=_("frame"))
    def frame_pretty(self, obj: OcppMessage) -> str:
        try:
            return pretty_json(json.loads(obj.frame))
        except ValueError:
            return format_html("<pre>{}</pre>", obj.frame)

    def get_search_results(
        self, request: HttpRequest, queryset: QuerySet, search_term: str
    ) -> tuple[QuerySet, bool]:
        return search_by_identity_or_message_id(request, queryset, search_term), False


# --- failed messages -----------------------------------------------------------------------------


class ReplayListFilter(admin.SimpleListFilter):
    title = _("replay")
    parameter_name = "replay"

    def lookups(self, request: HttpRequest, model_admin: Any) -> Any:
        return (("never", _("Not replayed")), ("ok", _("Replayed")), ("failed", _("Replay failed")))

    def queryset(self, request: HttpRequest, queryset: QuerySet) -> QuerySet:
        if self.value() == "never":
            return queryset.filter(replayed_at__isnull=True)
        if self.value() == "ok":
            return queryset.filter(replayed_at__isnull=False, replay_error="")
        if self.value() == "failed":
            return queryset.filter(replayed_at__isnull=False).exclude(replay_error="")
        return queryset


@admin.register(OcppFailedMessage)
class OcppFailedMessageAdmin(ReadOnlyAdminMixin, BaseModelAdmin):
    """Charger requests kept for replay (failed inside the product, or not handled before their
    connection closed), and their replay."""

    list_display = (
        "received_at",
        "charger",
        "action",
        "unique_id",
        "error_preview",
        "replayed_at",
        "replay_ok",
    )
    list_filter = (ReplayListFilter, ActionListFilter, "protocol", "received_at", ChargePointListFilter)
    search_fields = ("unique_id",)
    search_help_text = _("charger identity or message id")
    list_select_related = ("charge_point",)
    actions = ["replay"]
    fields = (
        "charge_point",
        "protocol",
        "action",
        "unique_id",
        "payload_pretty",
        "error",
        "received_at",
        "replayed_at",
        "replay_error",
    )
    readonly_fields = fields

    @admin.display(description=_("charge point"), ordering="charge_point__identity")
    def charger(self, obj: OcppFailedMessage) -> str:
        return charge_point_link(obj.charge_point_id, obj.charge_point.identity)

    @admin.display(description=_("error"))
    def error_preview(self, obj: OcppFailedMessage) -> str:
        return Truncator(obj.error).chars(80)

    @admin.display(description=_("replayed successfully"), boolean=True)
    def replay_ok(self, obj: OcppFailedMessage) -> bool | None:
        return None if obj.replayed_at is None else not obj.replay_error

    @admin.display(description=_("payload"))
    def payload_pretty(self, obj: OcppFailedMessage) -> str:
        return pretty_json(obj.payload)

    def get_search_results(
        self, request: HttpRequest, queryset: QuerySet, search_term: str
    ) -> tuple[QuerySet, bool]:
        return search_by_identity_or_message_id(request, queryset, search_term), False

    def has_replay_permission(self, request: HttpRequest) -> bool:
        return request.user.has_perm(f"{self.opts.app_label}.change_{self.opts.model_name}")

    @admin.action(description=_("Replay the selected messages"), permissions=["replay"])
    def replay(self, request: HttpRequest, queryset: QuerySet) -> None:
        """Run each message through its handler again, oldest first (safe to repeat)."""
        ok = failed = 0
        for message in queryset.select_related("charge_point").order_by("received_at", "pk"):
            message = failed_message_replay(failed=message, actor=request.user)
            if message.replay_error:
                failed += 1
                messages.error(
                    request,
                    _("{action} {id} failed again: {error}").format(
                        action=message.action, id=message.unique_id, error=message.replay_error
                    ),
                )
            else:
                ok += 1
        if ok:
            messages.success(
                request, ngettext("%(n)d message replayed.", "%(n)d messages replayed.", ok) % {"n": ok}
            )


# --- files ---------------------------------------------------------------------------------------


@admin.register(FirmwareFile)
class FirmwareFileAdmin(BaseModelAdmin):
    """Firmware images for UpdateFirmware. The file cannot be replaced: upload a new version instead."""

    form = FirmwareFileAdminForm
    list_display = (
        "__str__",
        "vendor",
        "model",
        "version",
        "size",
        "sha256_short",
        "organisation",
        "created_at",
    )
    list_filter = ("vendor", "organisation", "created_at")
    search_fields = ("vendor", "model", "version", "filename", "sha256")
    list_select_related = ("organisation",)

    def get_fields(self, request: HttpRequest, obj: Any = None) -> Any:
        fields = ["organisation", "vendor", "model", "version", "file", "notes"]
        if obj is not None:
            fields += ["filename", "size", "sha256", "download_url", "created_at"]
        return fields

    def get_readonly_fields(self, request: HttpRequest, obj: Any = None) -> Any:
        if obj is None:
            return ()
        return ("file", "filename", "size", "sha256", "download_url", "created_at")

    @admin.display(description=_("SHA-256"))
    def sha256_short(self, obj: FirmwareFile) -> str:
        return f"{obj.sha256[:12]}…" if obj.sha256 else "-"

    @admin.display(description=_("URL for chargers"))
    def download_url(self, obj: FirmwareFile) -> str:
        try:
            base = public_base_url()
        except ValueError:  # no CPO_PUBLIC_BASE_URL: a link relative to this admin's host
            base = ""
        url = transfers.firmware_url(firmware=obj, base_url=base)
        return format_html('<a href="{}">{}</a>', url, url)

    def save_model(self, request: HttpRequest, obj: FirmwareFile, form: Any, change: bool) -> None:
        if "file" in form.changed_data:
            transfers.firmware_fingerprint(firmware=obj)
        super().save_model(request, obj, form, change)


class UploadedListFilter(admin.SimpleListFilter):
    title = _("uploaded")
    parameter_name = "uploaded"

    def lookups(self, request: HttpRequest, model_admin: Any) -> Any:
        return (("yes", _("Yes")), ("no", _("No")))

    def queryset(self, request: HttpRequest, queryset: QuerySet) -> QuerySet:
        if self.value() in ("yes", "no"):
            return queryset.filter(uploaded_at__isnull=self.value() == "no")
        return queryset


@admin.register(DiagnosticsUpload)
class DiagnosticsUploadAdmin(ReadOnlyAdminMixin, BaseModelAdmin):
    """Diagnostics files chargers uploaded (and the links still waiting for one); downloadable by the
    staff of the charger's operator."""

    list_display = ("created_at", "charger", "command", "uploaded_at", "file_name", "size", "download")
    list_filter = (UploadedListFilter, "created_at", ChargePointListFilter)
    search_fields = ("charge_point__identity", "filename", "announced_filename")
    list_select_related = ("charge_point", "command")
    fields = (
        "charge_point",
        "command",
        "requested_by",
        "created_at",
        "expires_at",
        "announced_filename",
        "filename",
        "size",
        "sha256",
        "uploaded_at",
        "uploaded_from",
        "download",
    )
    readonly_fields = fields

    @admin.display(description=_("charge point"), ordering="charge_point__identity")
    def charger(self, obj: DiagnosticsUpload) -> str:
        return charge_point_link(obj.charge_point_id, obj.charge_point.identity)

    @admin.display(description=_("file name"))
    def file_name(self, obj: DiagnosticsUpload) -> str:
        return obj.filename or obj.announced_filename or "-"

    @admin.display(description=_("file"))
    def download(self, obj: DiagnosticsUpload) -> str:
        if not obj.file:
            return "-"
        url = reverse("admin:ocpp_gateway_diagnosticsupload_download", args=[obj.pk])
        return format_html('<a href="{}">{}</a>', url, _("Download"))

    def get_urls(self) -> list[Any]:
        return [
            path(
                "<int:object_id>/download/",
                self.admin_site.admin_view(self.download_view),
                name="ocpp_gateway_diagnosticsupload_download",
            ),
            *super().get_urls(),
        ]

    def download_view(self, request: HttpRequest, object_id: int) -> FileResponse:
        upload = self.get_object(request, str(object_id))  # 404 outside the user's organisations
        if not self.has_view_permission(request, upload):
            raise PermissionDenied
        if not upload.file:
            raise Http404(_("Nothing was uploaded to this link."))
        try:
            handle = upload.file.storage.open(upload.file.name, "rb")
        except FileNotFoundError as exc:
            raise Http404(_("The file is missing from storage.")) from exc
        return FileResponse(handle, as_attachment=True, filename=upload.filename or "diagnostics.bin")


# --- local authorisation lists -------------------------------------------------------------------


class LocalAuthListMemberInline(BaseTabularInline):
    """The list's chargers. Part of the list: whoever may edit the list may edit them."""

    model = LocalAuthListMember
    extra = 0
    autocomplete_fields = ("charge_point",)
    fields = (
        "charge_point",
        "sent_version",
        "sent_update_type",
        "sent_at",
        "last_status",
        "accepted_version",
        "accepted_at",
        "reported_version",
        "reported_at",
    )
    readonly_fields = fields[1:]

    def _may_edit_list(self, request: HttpRequest, obj: Any) -> bool:
        verb = "add" if obj is None else "change"
        return request.user.has_perm(f"ocpp_gateway.{verb}_localauthlist")

    def has_add_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return self._may_edit_list(request, obj)

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return self._may_edit_list(request, obj)

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return self._may_edit_list(request, obj)

    def has_view_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return self._may_edit_list(request, obj) or request.user.has_perm("ocpp_gateway.view_localauthlist")


@admin.register(LocalAuthList)
class LocalAuthListAdmin(BaseModelAdmin):
    """Local authorisation lists: their tokens, their chargers (and what each holds), and sending."""

    form = LocalAuthListAdminForm
    inlines = [LocalAuthListMemberInline]
    list_display = ("name", "organisation", "version", "entry_count", "charger_count", "updated_at")
    list_filter = ("organisation",)
    search_fields = ("name",)
    list_select_related = ("organisation",)
    readonly_fields = ("version", "updated_at")
    fields = ("organisation", "name", "members", "include_roaming", "version", "updated_at")
    actions = ["send_full", "send_differential", "request_version"]

    def get_queryset(self, request: HttpRequest) -> QuerySet:
        return (
            super()
            .get_queryset(request)
            .annotate(
                entry_count=Count("entries", filter=Q(entries__removed=False), distinct=True),
                charger_count=Count("members", distinct=True),
            )
        )

    @admin.display(description=_("id tokens"), ordering="entry_count")
    def entry_count(self, obj: LocalAuthList) -> int:
        return obj.entry_count

    @admin.display(description=_("charge points"), ordering="charger_count")
    def charger_count(self, obj: LocalAuthList) -> int:
        return obj.charger_count

    def save_related(self, request: HttpRequest, form: Any, formsets: Any, change: bool) -> None:
        """Save the chargers, then the tokens; tokens on the list that the user cannot see (another
        operator's) stay on it: a form that never showed them must not remove them."""
        super().save_related(request, form, formsets, change)
        hidden = IdToken.objects.filter(
            local_list_entries__local_list=form.instance, local_list_entries__removed=False
        ).exclude(pk__in=form.fields["members"].queryset.values("pk"))
        tokens = [*form.cleaned_data["members"], *hidden]
        localauth.local_list_set_members(local_list=form.instance, id_tokens=tokens)

    def has_send_permission(self, request: HttpRequest) -> bool:
        return request.user.has_perm(
            f"{self.opts.app_label}.change_{self.opts.model_name}"
        ) and request.user.has_perm("ocpp_gateway.add_ocppcommand")

    def _send(self, request: HttpRequest, queryset: QuerySet, update_type: str) -> None:
        for local_list in queryset.order_by("pk"):
            try:
                results = localauth.local_list_send(
                    local_list=local_list, update_type=update_type, actor=request.user, source="admin"
                )
            except ApplicationError as exc:
                messages.error(request, f"{local_list}: {exc.detail}")
                continue
            if not results:
                messages.warning(request, _("{name} has no charge points.").format(name=local_list))
            for result in results:
                self._report_send(request, local_list, result)

    def _report_send(
        self, request: HttpRequest, local_list: LocalAuthList, result: localauth.SendResult
    ) -> None:
        who = {"identity": result.charge_point.identity, "name": local_list}
        if result.up_to_date:
            messages.info(request, _("{identity} already has the current version of {name}.").format(**who))
        elif result.command is not None and result.command.status == CommandStatus.CHARGER_OFFLINE:
            messages.warning(request, _("{identity} is offline: {name} was not sent.").format(**who))
        else:
            payload = result.command.payload if result.command else {}
            messages.success(
                request,
                _("{name} sent to {identity} ({update}, version {version}).").format(
                    update=result.update_type,
                    version=payload.get("listVersion", payload.get("versionNumber", "-")),
                    **who,
                ),
            )
        if result.skipped:
            messages.warning(
                request,
                _("Left out for {identity} (longer than 20 characters): {tags}").format(
                    tags=", ".join(result.skipped), **who
                ),
            )

    @admin.action(description=_("Send the full list to its chargers"), permissions=["send"])
    def send_full(self, request: HttpRequest, queryset: QuerySet) -> None:
        self._send(request, queryset, localauth.FULL)

    @admin.action(description=_("Send the changes to its chargers (full where needed)"), permissions=["send"])
    def send_differential(self, request: HttpRequest, queryset: QuerySet) -> None:
        self._send(request, queryset, localauth.DIFFERENTIAL)

    @admin.action(description=_("Ask its chargers for their list version"), permissions=["send"])
    def request_version(self, request: HttpRequest, queryset: QuerySet) -> None:
        sent = 0
        for local_list in queryset.order_by("pk"):
            commands = localauth.local_list_version_request(
                local_list=local_list, actor=request.user, source="admin"
            )
            sent += sum(1 for c in commands if c.status != CommandStatus.CHARGER_OFFLINE)
        messages.info(
            request,
            ngettext(
                "Asked %(n)d charger; the answers appear on the list as they arrive.",
                "Asked %(n)d chargers; the answers appear on the list as they arrive.",
                sent,
            )
            % {"n": sent},
        )
