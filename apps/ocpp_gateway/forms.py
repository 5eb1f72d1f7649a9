"""Shared forms of the OCPP gateway: the base of every command form (what an operator fills in, and the
payload it becomes), the catalogue entry type, field helpers, and the admin forms for firmware files and
local authorisation lists. Each version's command forms and its catalogue live in its package:
`v16/commands.py`, `v201/commands.py`, `v21/commands.py`.

A command form only validates input: it builds its payload in `build_payload()`, checks it in `clean()`
with `command_payload_check` (what `command_send` checks), and `send()` hands it to a service
(`command_send`, or `localauth.local_list_send_to` for a local list composed when sent). What the product
fills in itself is left out and filled by `command_send`, as for every other caller: the ids OCPP 2.x
requests carry for later messages to refer to (remoteStartId, requestId) and the upload link of
GetDiagnostics / GetLog.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime
from typing import Any, ClassVar, cast

from django import forms
from django.contrib.admin.widgets import FilteredSelectMultiple
from django.utils.html import format_html, format_html_join
from django.utils.safestring import SafeString
from django.utils.translation import gettext_lazy as _
from ocpp.messages import get_validator

from apps.accounts.models import IdToken
from apps.ocpp_gateway import conf, protocol, versions
from apps.ocpp_gateway.handlers import iso
from apps.ocpp_gateway.models import FirmwareFile, LocalAuthList, OcppCommand
from apps.ocpp_gateway.services import command_payload_check, command_send
from apps.stations.models import ChargePoint, Evse
from cpo.exceptions import ApplicationError

INT32_MAX = 2**31 - 1


def payload_check(*, action: str, payload: dict[str, Any], version: str) -> None:
    """ValidationFailed (with command_send's wording) when `payload` breaks the action's JSON schema."""
    command_payload_check(action=action, payload=payload, version=version)


def schema_enum(action: str, version: str, *path: str) -> list[str]:
    """The values the command's JSON schema allows at `path` (properties, then nested properties;
    definitions referred to and array items are followed)."""
    schema: dict[str, Any] = get_validator(protocol.CALL, action, version).schema

    def resolve(node: dict[str, Any]) -> dict[str, Any]:
        while "$ref" in node or "items" in node:
            ref = node.get("$ref")
            node = schema["definitions"][ref.rsplit("/", 1)[-1]] if ref else node["items"]
        return node

    node = schema
    for name in path:
        node = resolve(node)["properties"][name]
    return list(resolve(node)["enum"])


def enum_choices(
    values: Iterable[Any], labels: dict[str, Any] | None = None, allowed: Iterable[str] | None = None
) -> list[tuple[str, Any]]:
    """Choices from protocol enum values (the value is the protocol term); `allowed` narrows them to
    what the schema accepts, `labels` explains some of them."""
    keep = set(allowed) if allowed is not None else None
    labels = labels or {}
    return [(str(v), labels.get(str(v), str(v))) for v in values if keep is None or str(v) in keep]


class DatalistInput(forms.TextInput):
    """A text input that suggests values (an HTML datalist) and still accepts any other."""

    def __init__(self, suggestions: Iterable[Any] = (), attrs: dict[str, Any] | None = None) -> None:
        super().__init__(attrs)
        self.suggestions = [str(s) for s in suggestions]

    def render(
        self, name: str, value: Any, attrs: dict[str, Any] | None = None, renderer: Any = None
    ) -> SafeString:
        attrs = dict(attrs or {})
        list_id = f"{attrs.get('id') or 'id_' + name}_suggestions"
        attrs["list"] = list_id
        html = super().render(name, value, attrs, renderer)
        options = format_html_join("", '<option value="{}">', ((s,) for s in self.suggestions))
        return format_html('{}<datalist id="{}">{}</datalist>', html, list_id, options)


class DateTimeLocalInput(forms.DateTimeInput):
    """The browser's own date-and-time picker; values are read in the server's time zone (UTC)."""

    input_type = "datetime-local"

    def __init__(self, attrs: dict[str, Any] | None = None) -> None:
        super().__init__(attrs, format="%Y-%m-%dT%H:%M")


def datetime_field(label: Any, *, required: bool = True, help_text: Any = "") -> forms.DateTimeField:
    return forms.DateTimeField(
        label=label, required=required, widget=DateTimeLocalInput(), help_text=help_text or _("UTC.")
    )


@dataclass(frozen=True)
class CommandContext:
    """What a command form needs besides the operator's input: the charger, who asks, and the base URL
    chargers reach us at (for upload and download links; None when unknown)."""

    charge_point: ChargePoint
    actor: Any = None
    base_url: str | None = None

    @property
    def ocpp(self) -> versions.OcppVersion:
        """The OCPP version the charger speaks."""
        return versions.for_charge_point(self.charge_point)

    @property
    def version(self) -> str:
        return self.ocpp.key


class CommandForm(forms.Form):
    """Base of the command forms. Subclasses name their `action`, declare typed fields and implement
    `build_payload()`; `payload` holds the checked payload after `is_valid()`."""

    action: ClassVar[str] = ""
    version: ClassVar[str] = "1.6"
    # Fields that take an EVSE number (1.6 connectorId, 2.0.1 evseId): offered as a list of the
    # charger's EVSEs.
    connector_fields: ClassVar[dict[str, bool]] = {}  # name -> whether 0 (the whole charger) is allowed

    timeout_s = forms.FloatField(
        label=_("answer deadline (seconds)"),
        min_value=1,
        max_value=3600,
        required=False,
        help_text=_("How long the charger has to answer; the page waits a few seconds of it."),
    )

    def __init__(self, *args: Any, context: CommandContext, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.context = context
        self.payload: dict[str, Any] | None = None
        self.notes: list[str] = []
        self.fields["timeout_s"].initial = conf.command_timeout_s()
        self._offer_connectors()
        self.setup()
        self.order_fields([name for name in self.fields if name != "timeout_s"])

    def setup(self) -> None:
        """Adjust fields to the charger (choices, initial values). Nothing to adjust by default."""

    def _offer_connectors(self) -> None:
        if not self.connector_fields:
            return
        evse_ids = list(
            Evse.objects.filter(charge_point=self.context.charge_point)
            .order_by("evse_id")
            .values_list("evse_id", flat=True)
        )
        if not evse_ids:
            return  # unknown layout: the number field stays
        v201_terms = versions.by_key(self.version).generation >= 2
        whole = _("0: the whole charging station") if v201_terms else _("0: the whole charge point")
        each = _("EVSE {n}") if v201_terms else _("Connector {n}")
        for name, allow_zero in self.connector_fields.items():
            field = self.fields[name]
            choices: list[tuple[Any, Any]] = [] if field.required else [("", "—")]
            if allow_zero:
                choices.append((0, whole))
            choices += [(n, each.format(n=n)) for n in evse_ids]
            self.fields[name] = forms.TypedChoiceField(
                label=field.label,
                required=field.required,
                choices=choices,
                coerce=int,
                empty_value=None,
                help_text=field.help_text,
                initial=field.initial,
            )

    def build_payload(self) -> dict[str, Any] | None:
        """The payload from cleaned_data; None when it can only be composed at send time (`send`)."""
        raise NotImplementedError(f"{type(self).__name__} must build its payload")

    def clean(self) -> dict[str, Any]:
        cleaned: dict[str, Any] = super().clean() or {}
        if self.errors:
            return cleaned
        try:
            payload = self.build_payload()
            if payload is not None:
                command_payload_check(action=self.action, payload=payload, version=self.version)
        except ApplicationError as exc:
            raise forms.ValidationError(exc.detail, code=exc.code) from exc
        self.payload = payload
        return cleaned

    def send(self, *, source: str) -> OcppCommand:
        """Send the command the valid form composed, as the context's actor, through the command service.
        Raises what `command_send` raises; nothing is stored then."""
        if self.payload is None:
            raise ValueError("send() needs a valid form")
        context = self.context
        return command_send(
            charge_point=context.charge_point,
            action=self.action,
            payload=self.payload,
            timeout_s=self.deadline(),
            actor=context.actor,
            source=source,
            base_url=context.base_url,
        )

    def deadline(self) -> float | None:
        return self.cleaned_data.get("timeout_s")

    @staticmethod
    def optional(**values: Any) -> dict[str, Any]:
        """The given payload members that have a value (None and empty strings are left out)."""
        return {key: value for key, value in values.items() if value is not None and value != ""}


def connector_field(
    label: Any = None, *, required: bool = True, allow_zero: bool = False, help_text: Any = ""
) -> forms.IntegerField:
    return forms.IntegerField(
        label=label or _("connector"),
        required=required,
        min_value=0 if allow_zero else 1,
        max_value=INT32_MAX,
        help_text=help_text,
    )


def id_tag_field(label: Any = None, *, required: bool = True) -> forms.CharField:
    return forms.CharField(
        label=label or _("id tag"),
        required=required,
        max_length=20,
        help_text=_("The token uid (up to 20 characters in OCPP 1.6)."),
    )


def _int(label: Any, *, required: bool = True, min_value: int = 0, help_text: Any = "") -> forms.IntegerField:
    return forms.IntegerField(
        label=label, required=required, min_value=min_value, max_value=INT32_MAX, help_text=help_text
    )


def _utc(value: datetime | None) -> str | None:
    return iso(value) if value is not None else None


@dataclass(frozen=True)
class CommandSpec:
    """One command of one OCPP version: its action name, form and what it does."""

    action: str
    version: str
    form_class: type[CommandForm]
    description: Any


def catalogue(version: str, *entries: tuple[type[CommandForm], Any]) -> dict[str, CommandSpec]:
    """A version's command catalogue from (form, description) pairs, by action name."""
    return {
        form.action: CommandSpec(form.action, version, form, description) for form, description in entries
    }


# --- admin forms -----------------------------------------------------------------------------------


class FirmwareFileAdminForm(forms.ModelForm):
    """Upload a firmware image; its size and SHA-256 are computed from the file."""

    actor: Any = None

    class Meta:
        model = FirmwareFile
        fields = ("organisation", "vendor", "model", "version", "file", "notes")


class LocalAuthListAdminForm(forms.ModelForm):
    """A local list and its tokens; saving goes through `local_list_set_members` (versioning)."""

    members = forms.ModelMultipleChoiceField(
        label=_("id tokens"),
        queryset=IdToken.objects.none(),
        required=False,
        widget=FilteredSelectMultiple(_("id tokens"), is_stacked=False),
    )
    actor: Any = None

    class Meta:
        model = LocalAuthList
        fields = ("organisation", "name", "include_roaming")

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        members = cast(forms.ModelMultipleChoiceField, self.fields["members"])
        members.queryset = IdToken.objects.for_actor(self.actor).order_by("uid")
        if self.instance.pk:
            self.initial["members"] = list(
                self.instance.entries.filter(removed=False, id_token__isnull=False).values_list(
                    "id_token_id", flat=True
                )
            )
