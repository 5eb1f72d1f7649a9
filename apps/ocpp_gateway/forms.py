"""Forms of the OCPP gateway: one typed form per command a charger takes, per OCPP version (what an
operator fills in, and the payload it becomes), and the admin forms for firmware files and local
authorisation lists.

A command form only validates input: it builds its payload in `build_payload()`, checks it in `clean()`
with `command_payload_check` (what `command_send` checks), and `send()` hands it to a service
(`command_send`, or `localauth.local_list_send_to` for a local list composed when sent). What the product
fills in itself is left out and filled by `command_send`, as for every other caller: the ids OCPP 2.0.1
requests carry for later messages to refer to (remoteStartId, requestId) and the upload link of
GetDiagnostics / GetLog.

The 2.0.1 forms are named `V201<Action>Form`; where a 1.6 form already composes the same payload, the
2.0.1 one is that form checked against the 2.0.1 schema.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime
from typing import Any, ClassVar, cast

from django import forms
from django.contrib.admin.widgets import FilteredSelectMultiple
from django.utils.html import format_html, format_html_join
from django.utils.safestring import SafeString
from django.utils.text import format_lazy
from django.utils.translation import gettext_lazy as _
from ocpp.messages import get_validator
from ocpp.v16 import enums as v16
from ocpp.v201 import enums as v201

from apps.accounts.models import IdToken
from apps.charging.choices import SessionStatus
from apps.charging.models import ChargingSession
from apps.ocpp_gateway import conf, localauth, protocol, transfers
from apps.ocpp_gateway.handlers import iso
from apps.ocpp_gateway.models import FirmwareFile, LocalAuthList, OcppCommand
from apps.ocpp_gateway.services import command_payload_check, command_send
from apps.stations import keys
from apps.stations.choices import OcppProtocol
from apps.stations.models import ChargePoint, Evse
from cpo import clock
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
    def version(self) -> str:
        subprotocol = self.charge_point.ocpp_protocol or "ocpp1.6"
        return protocol.SUBPROTOCOL_VERSIONS.get(subprotocol, subprotocol)


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
        v201_terms = self.version == "2.0.1"
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
        """The payload from cleaned_data; None when it can only be composed at send time (`prepare`)."""
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


# --- OCPP 1.6 commands -----------------------------------------------------------------------------


class CancelReservationForm(CommandForm):
    action = "CancelReservation"
    reservation_id = _int(_("reservation id"))

    def build_payload(self) -> dict[str, Any]:
        return {"reservationId": self.cleaned_data["reservation_id"]}


class ChangeAvailabilityForm(CommandForm):
    action = "ChangeAvailability"
    connector_fields = {"connector_id": True}
    connector_id = connector_field(allow_zero=True, help_text=_("0 changes the whole charge point."))
    type = forms.ChoiceField(
        label=_("availability"),
        choices=enum_choices(
            v16.AvailabilityType,
            {"Operative": _("Operative: may charge"), "Inoperative": _("Inoperative: may not charge")},
        ),
    )

    def build_payload(self) -> dict[str, Any]:
        return {"connectorId": self.cleaned_data["connector_id"], "type": self.cleaned_data["type"]}


class ChangeConfigurationForm(CommandForm):
    action = "ChangeConfiguration"
    key = forms.CharField(
        label=_("key"),
        max_length=50,
        widget=DatalistInput(v16.ConfigurationKey),
        help_text=_("A standard key (suggested) or the vendor's own."),
    )
    value = forms.CharField(label=_("value"), max_length=500, required=False, strip=False)

    def build_payload(self) -> dict[str, Any]:
        return {"key": self.cleaned_data["key"], "value": self.cleaned_data["value"]}


class ClearCacheForm(CommandForm):
    action = "ClearCache"

    def build_payload(self) -> dict[str, Any]:
        return {}


class ClearChargingProfileForm(CommandForm):
    action = "ClearChargingProfile"
    connector_fields = {"connector_id": True}
    profile_id = _int(_("charging profile id"), required=False, help_text=_("Empty: any profile."))
    connector_id = connector_field(required=False, allow_zero=True, help_text=_("Empty: any connector."))
    charging_profile_purpose = forms.ChoiceField(
        label=_("purpose"),
        required=False,
        choices=[("", _("any")), *enum_choices(v16.ChargingProfilePurposeType)],
    )
    stack_level = _int(_("stack level"), required=False, help_text=_("Empty: any stack level."))

    def build_payload(self) -> dict[str, Any]:
        data = self.cleaned_data
        return self.optional(
            id=data["profile_id"],
            connectorId=data["connector_id"],
            chargingProfilePurpose=data["charging_profile_purpose"],
            stackLevel=data["stack_level"],
        )


class DataTransferForm(CommandForm):
    action = "DataTransfer"
    vendor_id = forms.CharField(label=_("vendor id"), max_length=255)
    message_id = forms.CharField(label=_("message id"), max_length=50, required=False)
    # Not named "data": that is the bound form's input.
    vendor_data = forms.CharField(
        label=_("data"),
        required=False,
        strip=False,
        widget=forms.Textarea(attrs={"rows": 4}),
        help_text=_("Sent as text, exactly as typed."),
    )

    def build_payload(self) -> dict[str, Any]:
        data = self.cleaned_data
        return self.optional(
            vendorId=data["vendor_id"], messageId=data["message_id"], data=data["vendor_data"]
        )


class GetCompositeScheduleForm(CommandForm):
    action = "GetCompositeSchedule"
    connector_fields = {"connector_id": True}
    connector_id = connector_field(allow_zero=True, help_text=_("0: the charge point's total."))
    duration = _int(_("duration (seconds)"), min_value=1)
    charging_rate_unit = forms.ChoiceField(
        label=_("unit"),
        required=False,
        choices=[("", _("the charger's choice")), *enum_choices(v16.ChargingRateUnitType)],
    )

    def build_payload(self) -> dict[str, Any]:
        data = self.cleaned_data
        return self.optional(
            connectorId=data["connector_id"],
            duration=data["duration"],
            chargingRateUnit=data["charging_rate_unit"],
        )


class GetConfigurationForm(CommandForm):
    action = "GetConfiguration"
    keys = forms.CharField(
        label=_("keys"),
        required=False,
        widget=forms.Textarea(attrs={"rows": 4}),
        help_text=_("One key per line; empty for all keys."),
    )

    def clean_keys(self) -> list[str]:
        keys = [line.strip() for line in self.cleaned_data["keys"].splitlines() if line.strip()]
        too_long = [key for key in keys if len(key) > 50]
        if too_long:
            raise forms.ValidationError(
                _("Keys have at most 50 characters: {keys}").format(keys=", ".join(too_long))
            )
        return keys

    def build_payload(self) -> dict[str, Any]:
        keys = self.cleaned_data["keys"]
        return {"key": keys} if keys else {}


class GetDiagnosticsForm(CommandForm):
    """The upload location is ours: `command_send` fills in a single-use link when it sends the command."""

    action = "GetDiagnostics"
    start_time = datetime_field(_("from"), required=False, help_text=_("Oldest log entries wanted (UTC)."))
    stop_time = datetime_field(_("until"), required=False, help_text=_("Newest log entries wanted (UTC)."))
    retries = _int(_("retries"), required=False)
    retry_interval = _int(_("retry interval (seconds)"), required=False)

    def clean(self) -> dict[str, Any]:
        start, stop = self.cleaned_data.get("start_time"), self.cleaned_data.get("stop_time")
        if start and stop and stop <= start:
            self.add_error("stop_time", _("The end must be after the start."))
        if not self.context.base_url:
            raise forms.ValidationError(_("The public base URL is unknown: set CPO_PUBLIC_BASE_URL."))
        return super().clean()

    def _payload(self) -> dict[str, Any]:
        data = self.cleaned_data
        return self.optional(
            retries=data["retries"],
            retryInterval=data["retry_interval"],
            startTime=_utc(data["start_time"]),
            stopTime=_utc(data["stop_time"]),
        )

    def build_payload(self) -> dict[str, Any]:
        return self._payload()


class GetLocalListVersionForm(CommandForm):
    action = "GetLocalListVersion"

    def build_payload(self) -> dict[str, Any]:
        return {}


class RemoteStartTransactionForm(CommandForm):
    action = "RemoteStartTransaction"
    connector_fields = {"connector_id": False}
    id_tag = id_tag_field()
    connector_id = connector_field(required=False, help_text=_("Empty: the charger chooses."))
    charging_profile = forms.JSONField(
        label=_("charging profile (JSON)"),
        required=False,
        widget=forms.Textarea(attrs={"rows": 8, "cols": 80}),
        help_text=_(
            'Optional OCPP ChargingProfile with purpose TxProfile, e.g. {"chargingProfileId": 1, '
            '"stackLevel": 0, "chargingProfilePurpose": "TxProfile", "chargingProfileKind": "Relative", '
            '"chargingSchedule": {"chargingRateUnit": "A", "chargingSchedulePeriod": '
            '[{"startPeriod": 0, "limit": 16.0}]}}'
        ),
    )

    def clean_charging_profile(self) -> Any:
        value = self.cleaned_data["charging_profile"]
        if value is not None and not isinstance(value, dict):
            raise forms.ValidationError(_("A charging profile is a JSON object."))
        return value

    def build_payload(self) -> dict[str, Any]:
        data = self.cleaned_data
        return self.optional(
            connectorId=data["connector_id"],
            idTag=data["id_tag"],
            chargingProfile=data["charging_profile"] or None,
        )


class RemoteStopTransactionForm(CommandForm):
    action = "RemoteStopTransaction"
    transaction_id = forms.IntegerField(label=_("transaction id"), min_value=-(2**31), max_value=INT32_MAX)

    def setup(self) -> None:
        active = list(
            ChargingSession.objects.filter(
                charge_point=self.context.charge_point,
                status=SessionStatus.ACTIVE,
                ocpp16_transaction_id__isnull=False,
            )
            .order_by("-started_at")
            .values_list("ocpp16_transaction_id", flat=True)[:20]
        )
        self.fields["transaction_id"].widget = DatalistInput(active)
        if len(active) == 1:
            self.fields["transaction_id"].initial = active[0]
        if active:
            self.fields["transaction_id"].help_text = _("Active on this charger: {ids}").format(
                ids=", ".join(str(tx) for tx in active)
            )

    def build_payload(self) -> dict[str, Any]:
        return {"transactionId": self.cleaned_data["transaction_id"]}


class ReserveNowForm(CommandForm):
    action = "ReserveNow"
    connector_fields = {"connector_id": True}
    connector_id = connector_field(
        allow_zero=True, help_text=_("0: any connector (if the charger allows it).")
    )
    expiry_date = datetime_field(_("reserved until"))
    id_tag = id_tag_field()
    parent_id_tag = id_tag_field(_("parent id tag"), required=False)
    reservation_id = _int(_("reservation id"))

    def clean_expiry_date(self) -> datetime:
        value = self.cleaned_data["expiry_date"]
        if value <= clock.now():
            raise forms.ValidationError(_("The reservation must end in the future."))
        return value

    def build_payload(self) -> dict[str, Any]:
        data = self.cleaned_data
        return self.optional(
            connectorId=data["connector_id"],
            expiryDate=_utc(data["expiry_date"]),
            idTag=data["id_tag"],
            parentIdTag=data["parent_id_tag"],
            reservationId=data["reservation_id"],
        )


class ResetForm(CommandForm):
    action = "Reset"
    type = forms.ChoiceField(
        label=_("type"),
        initial="Soft",
        choices=enum_choices(
            v16.ResetType,
            {"Soft": _("Soft: stop transactions and restart the software"), "Hard": _("Hard: reboot now")},
        ),
    )

    def build_payload(self) -> dict[str, Any]:
        return {"type": self.cleaned_data["type"]}


class SendLocalListForm(CommandForm):
    """The list comes from the charger's local authorisation list; the payload is composed when sent
    (entries refreshed from their tokens, version taken then)."""

    action = "SendLocalList"
    update_type = forms.ChoiceField(
        label=_("update"),
        choices=enum_choices(
            v16.UpdateType,
            {
                "Full": _("Full: replace the charger's list"),
                "Differential": _("Differential: changes since its version"),
            },
        ),
    )

    def clean(self) -> dict[str, Any]:
        cleaned = super().clean()
        if self.errors:
            return cleaned
        try:
            self.member = localauth.local_list_member_for(charge_point=self.context.charge_point)
        except ApplicationError as exc:
            raise forms.ValidationError(exc.detail, code=exc.code) from exc
        if cleaned["update_type"] == localauth.DIFFERENTIAL and self.member.accepted_version is None:
            self.add_error(
                "update_type",
                _("The charger has not accepted a version of its list yet: send a full update."),
            )
        return cleaned

    def build_payload(self) -> None:
        return None

    def send(self, *, source: str) -> OcppCommand:
        command, skipped = localauth.local_list_send_to(
            member=self.member,
            update_type=self.cleaned_data["update_type"],
            actor=self.context.actor,
            source=source,
            timeout_s=self.deadline(),
        )
        if skipped:
            self.notes.append(
                str(_("Left out (longer than 20 characters): {tags}").format(tags=", ".join(skipped)))
            )
        return command


class SetChargingProfileForm(CommandForm):
    action = "SetChargingProfile"
    connector_fields = {"connector_id": True}
    connector_id = connector_field(allow_zero=True, help_text=_("0: a limit for the whole charge point."))
    cs_charging_profiles = forms.JSONField(
        label=_("charging profile (JSON)"),
        widget=forms.Textarea(attrs={"rows": 10, "cols": 80}),
        help_text=_(
            'An OCPP ChargingProfile, e.g. {"chargingProfileId": 1, "stackLevel": 0, '
            '"chargingProfilePurpose": "TxDefaultProfile", "chargingProfileKind": "Relative", '
            '"chargingSchedule": {"chargingRateUnit": "A", "chargingSchedulePeriod": '
            '[{"startPeriod": 0, "limit": 16.0}]}}'
        ),
    )

    def clean_cs_charging_profiles(self) -> Any:
        value = self.cleaned_data["cs_charging_profiles"]
        if not isinstance(value, dict):
            raise forms.ValidationError(_("A charging profile is a JSON object."))
        return value

    def build_payload(self) -> dict[str, Any]:
        data = self.cleaned_data
        return {"connectorId": data["connector_id"], "csChargingProfiles": data["cs_charging_profiles"]}


class TriggerMessageForm(CommandForm):
    action = "TriggerMessage"
    connector_fields = {"connector_id": True}
    requested_message = forms.ChoiceField(
        label=_("message"),
        choices=enum_choices(
            v16.MessageTrigger, allowed=schema_enum("TriggerMessage", "1.6", "requestedMessage")
        ),
    )
    connector_id = connector_field(
        required=False, allow_zero=True, help_text=_("For StatusNotification and MeterValues; empty: all.")
    )

    def build_payload(self) -> dict[str, Any]:
        data = self.cleaned_data
        return self.optional(requestedMessage=data["requested_message"], connectorId=data["connector_id"])


class UnlockConnectorForm(CommandForm):
    action = "UnlockConnector"
    connector_fields = {"connector_id": False}
    connector_id = connector_field()

    def build_payload(self) -> dict[str, Any]:
        return {"connectorId": self.cleaned_data["connector_id"]}


class UpdateFirmwareForm(CommandForm):
    """The charger downloads an uploaded firmware file from its unguessable URL."""

    action = "UpdateFirmware"
    firmware = forms.ModelChoiceField(label=_("firmware file"), queryset=FirmwareFile.objects.none())
    retrieve_date = datetime_field(_("download from"), help_text=_("UTC; now or later."))
    retries = _int(_("retries"), required=False)
    retry_interval = _int(_("retry interval (seconds)"), required=False)
    ignore_model_mismatch = forms.BooleanField(
        label=_("send even if the file is for another charger model"),
        required=False,
    )

    def setup(self) -> None:
        cp = self.context.charge_point
        field = cast(forms.ModelChoiceField, self.fields["firmware"])
        field.queryset = FirmwareFile.objects.for_actor(self.context.actor).filter(
            organisation_id=cp.organisation_id
        )
        self.fields["retrieve_date"].initial = clock.now().replace(second=0, microsecond=0)

    def clean(self) -> dict[str, Any]:
        firmware, cp = self.cleaned_data.get("firmware"), self.context.charge_point
        if firmware is not None and not self.cleaned_data.get("ignore_model_mismatch"):
            for mine, theirs in ((firmware.vendor, cp.vendor), (firmware.model, cp.model)):
                if mine and theirs and mine.casefold() != theirs.casefold():
                    self.add_error(
                        "firmware",
                        _("This file is for {target}; the charger is {vendor} {model}.").format(
                            target=f"{firmware.vendor} {firmware.model}".strip(),
                            vendor=cp.vendor,
                            model=cp.model,
                        ),
                    )
                    break
        if not self.context.base_url:
            raise forms.ValidationError(_("The public base URL is unknown: set CPO_PUBLIC_BASE_URL."))
        return super().clean()

    def build_payload(self) -> dict[str, Any]:
        data = self.cleaned_data
        location = transfers.firmware_url(firmware=data["firmware"], base_url=str(self.context.base_url))
        return self.optional(
            location=location,
            retrieveDate=_utc(data["retrieve_date"]),
            retries=data["retries"],
            retryInterval=data["retry_interval"],
        )


# --- OCPP 2.0.1 commands ---------------------------------------------------------------------------

# Component and variable names in a device model reference (the characters OCPP's examples use).
_NAME = r"[A-Za-z0-9_\-*+|]{1,50}"
VARIABLE_REFERENCE = re.compile(
    rf"^(?P<component>{_NAME})(?::(?P<component_instance>{_NAME}))?"
    rf"(?:@(?P<evse>\d{{1,5}})(?:/(?P<connector>\d{{1,5}}))?)?"
    rf"(?:\.(?P<variable>{_NAME})(?::(?P<variable_instance>{_NAME}))?)?$"
)
REFERENCE_HELP = _(
    "One per line: Component.Variable, e.g. OCPPCommCtrlr.HeartbeatInterval. An instance follows a "
    "colon (Component:instance, Variable:instance) and an EVSE or connector an @ after the component: "
    "EVSE@1.AvailabilityState, Connector@1/2.AvailabilityState."
)
V201_PROFILE_EXAMPLE = (
    '{"id": 1, "stackLevel": 0, "chargingProfilePurpose": "TxDefaultProfile", '
    '"chargingProfileKind": "Relative", "chargingSchedule": [{"id": 1, "chargingRateUnit": "A", '
    '"chargingSchedulePeriod": [{"startPeriod": 0, "limit": 16.0}]}]}'
)


def variable_reference(text: str, *, variable_required: bool = True) -> dict[str, Any]:
    """A device model reference as written in a form (see REFERENCE_HELP), as OCPP 2.0.1 JSON:
    {"component": {...}, "variable": {...}}. ValueError with the reason when it cannot be read."""
    match = VARIABLE_REFERENCE.match(text.strip())
    if match is None:
        raise ValueError(_("{text} is not Component.Variable (see the help).").format(text=text.strip()))
    parts = match.groupdict()
    component: dict[str, Any] = {"name": parts["component"]}
    if parts["component_instance"]:
        component["instance"] = parts["component_instance"]
    if parts["evse"]:
        evse = {"id": int(parts["evse"])}
        if parts["connector"]:
            evse["connectorId"] = int(parts["connector"])
        component["evse"] = evse
    reference: dict[str, Any] = {"component": component}
    if parts["variable"]:
        variable = {"name": parts["variable"]}
        if parts["variable_instance"]:
            variable["instance"] = parts["variable_instance"]
        reference["variable"] = variable
    elif variable_required:
        raise ValueError(_("{text} names no variable: write Component.Variable.").format(text=text.strip()))
    return reference


def reference_lines(
    value: str, *, variable_required: bool = True, with_values: bool = False
) -> list[dict[str, Any]]:
    """The references of a multi-line field (blank lines skipped); with values, each line is
    `reference = value` and the value is returned as "value". ValidationError naming every bad line."""
    items, problems = [], []
    for number, line in enumerate(value.splitlines(), start=1):
        if not line.strip():
            continue
        text, value_part = line, None
        if with_values:
            if "=" not in line:
                problems.append(_("Line {no}: write Component.Variable = value.").format(no=number))
                continue
            text, value_part = (part.strip() for part in line.split("=", 1))
        try:
            item = variable_reference(text, variable_required=variable_required)
        except ValueError as exc:
            problems.append(_("Line {no}: {problem}").format(no=number, problem=exc))
            continue
        if value_part is not None:
            if len(value_part) > 1000:
                problems.append(_("Line {no}: a value has at most 1000 characters.").format(no=number))
                continue
            item["value"] = value_part
        items.append(item)
    if problems:
        raise forms.ValidationError(problems)
    return items


def id_token_type_field() -> forms.ChoiceField:
    return forms.ChoiceField(
        label=_("token type"),
        initial=v201.IdTokenEnumType.central,
        choices=enum_choices(v201.IdTokenEnumType),
        help_text=_("Central: a token of ours, e.g. the driver's app account."),
    )


def v201_id_token_field(label: Any = None, *, required: bool = True) -> forms.CharField:
    return forms.CharField(
        label=label or _("id token"),
        required=required,
        max_length=36,
        help_text=_("The token's identifier (up to 36 characters in OCPP 2.0.1)."),
    )


def evse_field(
    label: Any = None, *, required: bool = True, allow_zero: bool = False, help_text: Any = ""
) -> forms.IntegerField:
    return connector_field(label or _("EVSE"), required=required, allow_zero=allow_zero, help_text=help_text)


def profile_purpose_field() -> forms.ChoiceField:
    """An optional charging profile purpose (empty: any)."""
    return forms.ChoiceField(
        label=_("purpose"),
        required=False,
        choices=[("", _("any")), *enum_choices(v201.ChargingProfilePurposeEnumType)],
    )


def charging_profile_field(*, required: bool = True, help_text: Any = "") -> forms.JSONField:
    return forms.JSONField(
        label=_("charging profile (JSON)"),
        required=required,
        widget=forms.Textarea(attrs={"rows": 10, "cols": 80}),
        help_text=help_text
        or format_lazy(_("An OCPP 2.0.1 ChargingProfile, e.g. {example}"), example=V201_PROFILE_EXAMPLE),
    )


def json_object(value: Any, *, required: bool = True) -> dict[str, Any] | None:
    """`value` when it is a JSON object (None when empty and optional); ValidationError otherwise."""
    if value is None and not required:
        return None
    if not isinstance(value, dict):
        raise forms.ValidationError(_("A charging profile is a JSON object."))
    return value


def evse_object(evse_id: int | None, connector_id: int | None) -> dict[str, Any] | None:
    """A 2.0.1 EVSEType for an EVSE and optionally one of its connectors (None without an EVSE)."""
    if evse_id is None:
        return None
    return CommandForm.optional(id=evse_id, connectorId=connector_id)


class V201CommandForm(CommandForm):
    """Base of the OCPP 2.0.1 command forms."""

    version = "2.0.1"

    def require_evse_for_connector(self, evse: str = "evse_id", connector: str = "connector_id") -> None:
        """A connector number means nothing without its EVSE: say so on the connector field."""
        if self.cleaned_data.get(connector) is not None and self.cleaned_data.get(evse) is None:
            self.add_error(connector, _("Choose the EVSE this connector belongs to."))


class ActiveTransactionMixin:
    """Offers the charger's active 2.0.1 transactions as suggestions for a transaction id field."""

    fields: dict[str, forms.Field]
    context: CommandContext

    def offer_active_transactions(self, name: str) -> None:
        active = list(
            ChargingSession.objects.filter(
                charge_point=self.context.charge_point,
                status=SessionStatus.ACTIVE,
                protocol=OcppProtocol.OCPP201,
            )
            .order_by("-started_at")
            .values_list("transaction_ref", flat=True)[:20]
        )
        field = self.fields[name]
        field.widget = DatalistInput(active)
        if len(active) == 1:
            field.initial = active[0]
        if active:
            field.help_text = _("Active on this charger: {ids}").format(ids=", ".join(active))


class V201CancelReservationForm(CancelReservationForm):
    version = "2.0.1"


class V201ChangeAvailabilityForm(V201CommandForm):
    action = "ChangeAvailability"
    connector_fields = {"evse_id": False}
    operational_status = forms.ChoiceField(
        label=_("availability"),
        choices=enum_choices(
            v201.OperationalStatusEnumType,
            {"Operative": _("Operative: may charge"), "Inoperative": _("Inoperative: may not charge")},
        ),
    )
    evse_id = evse_field(required=False, help_text=_("Empty: the whole charging station."))
    connector_id = connector_field(required=False, help_text=_("A connector of that EVSE; empty: all of it."))

    def clean(self) -> dict[str, Any]:
        self.require_evse_for_connector()
        return super().clean()

    def build_payload(self) -> dict[str, Any]:
        data = self.cleaned_data
        return self.optional(
            operationalStatus=data["operational_status"],
            evse=evse_object(data["evse_id"], data["connector_id"]),
        )


class V201ClearCacheForm(ClearCacheForm):
    version = "2.0.1"


class V201ClearChargingProfileForm(V201CommandForm):
    action = "ClearChargingProfile"
    connector_fields = {"evse_id": True}
    profile_id = _int(_("charging profile id"), required=False, help_text=_("Empty: any profile."))
    evse_id = evse_field(required=False, allow_zero=True, help_text=_("Empty: any EVSE."))
    charging_profile_purpose = profile_purpose_field()
    stack_level = _int(_("stack level"), required=False, help_text=_("Empty: any stack level."))

    def build_payload(self) -> dict[str, Any]:
        data = self.cleaned_data
        criteria = self.optional(
            evseId=data["evse_id"],
            chargingProfilePurpose=data["charging_profile_purpose"],
            stackLevel=data["stack_level"],
        )
        return self.optional(chargingProfileId=data["profile_id"], chargingProfileCriteria=criteria or None)


class V201CostUpdatedForm(ActiveTransactionMixin, V201CommandForm):
    action = "CostUpdated"
    transaction_id = forms.CharField(label=_("transaction id"), max_length=36)
    total_cost = forms.DecimalField(
        label=_("total cost"),
        min_value=0,
        max_digits=12,
        decimal_places=4,
        help_text=_("Including taxes, in the currency the charger is configured with."),
    )

    def setup(self) -> None:
        self.offer_active_transactions("transaction_id")

    def build_payload(self) -> dict[str, Any]:
        data = self.cleaned_data
        return {"transactionId": data["transaction_id"], "totalCost": float(data["total_cost"])}


class V201DataTransferForm(DataTransferForm):
    version = "2.0.1"
    data_is_json = forms.BooleanField(
        label=_("the data is JSON"),
        required=False,
        help_text=_("OCPP 2.0.1 takes any JSON value: send the data parsed instead of as text."),
    )

    def clean(self) -> dict[str, Any]:
        if self.cleaned_data.get("data_is_json"):
            try:
                self.cleaned_data["json_data"] = json.loads(self.cleaned_data.get("vendor_data") or "")
            except ValueError as exc:
                self.add_error("vendor_data", _("This is not JSON: {error}").format(error=exc))
        return super().clean()

    def build_payload(self) -> dict[str, Any]:
        payload = super().build_payload()
        if self.cleaned_data.get("data_is_json"):
            payload["data"] = self.cleaned_data["json_data"]
        return payload


class V201GetBaseReportForm(V201CommandForm):
    """The charger answers at once and sends the report in NotifyReport messages, which update the stored
    device model; their requestId is the command's id."""

    action = "GetBaseReport"
    report_base = forms.ChoiceField(
        label=_("report"),
        initial=v201.ReportBaseEnumType.full_inventory,
        choices=enum_choices(
            v201.ReportBaseEnumType,
            {
                "ConfigurationInventory": _("ConfigurationInventory: the variables that can be set"),
                "FullInventory": _("FullInventory: everything"),
                "SummaryInventory": _("SummaryInventory: the components and their availability"),
            },
        ),
    )

    def build_payload(self) -> dict[str, Any]:
        return {"reportBase": self.cleaned_data["report_base"]}


class V201GetChargingProfilesForm(V201CommandForm):
    """The charger reports the matching profiles in ReportChargingProfiles messages whose requestId is
    the command's id."""

    action = "GetChargingProfiles"
    connector_fields = {"evse_id": True}
    evse_id = evse_field(
        required=False, allow_zero=True, help_text=_("0: the station's own profiles; empty: all.")
    )
    charging_profile_purpose = profile_purpose_field()
    stack_level = _int(_("stack level"), required=False)
    profile_ids = forms.CharField(
        label=_("charging profile ids"), required=False, help_text=_("Separated by commas; empty: any.")
    )
    charging_limit_sources = forms.MultipleChoiceField(
        label=_("set by"),
        required=False,
        choices=enum_choices(
            v201.ChargingLimitSourceEnumType,
            allowed=schema_enum("GetChargingProfiles", "2.0.1", "chargingProfile", "chargingLimitSource"),
        ),
        widget=forms.CheckboxSelectMultiple,
        help_text=_("None ticked: any source."),
    )

    def clean_profile_ids(self) -> list[int]:
        parts = [part.strip() for part in self.cleaned_data["profile_ids"].split(",") if part.strip()]
        bad = [part for part in parts if not part.isdigit() or int(part) > INT32_MAX]
        if bad:
            raise forms.ValidationError(
                _("Charging profile ids are whole numbers: {values}").format(values=", ".join(bad))
            )
        return [int(part) for part in parts]

    def build_payload(self) -> dict[str, Any]:
        data = self.cleaned_data
        criterion = self.optional(
            chargingProfilePurpose=data["charging_profile_purpose"],
            stackLevel=data["stack_level"],
            chargingProfileId=data["profile_ids"] or None,
            chargingLimitSource=data["charging_limit_sources"] or None,
        )
        return self.optional(evseId=data["evse_id"], chargingProfile=criterion)


class V201GetCompositeScheduleForm(V201CommandForm):
    action = "GetCompositeSchedule"
    connector_fields = {"evse_id": True}
    evse_id = evse_field(allow_zero=True, help_text=_("0: the grid connection of the whole station."))
    duration = _int(_("duration (seconds)"), min_value=1)
    charging_rate_unit = forms.ChoiceField(
        label=_("unit"),
        required=False,
        choices=[("", _("the charger's choice")), *enum_choices(v201.ChargingRateUnitEnumType)],
    )

    def build_payload(self) -> dict[str, Any]:
        data = self.cleaned_data
        return self.optional(
            evseId=data["evse_id"], duration=data["duration"], chargingRateUnit=data["charging_rate_unit"]
        )


class V201GetLocalListVersionForm(GetLocalListVersionForm):
    version = "2.0.1"


class V201GetLogForm(GetDiagnosticsForm):
    """The log goes to the same single-use upload link as 1.6 diagnostics (log.remoteLocation); the
    charger reports progress in LogStatusNotification messages whose requestId is the command's id."""

    action = "GetLog"
    version = "2.0.1"
    field_order = ["log_type"]
    log_type = forms.ChoiceField(
        label=_("log"),
        choices=enum_choices(
            v201.LogEnumType,
            {
                "DiagnosticsLog": _("DiagnosticsLog: diagnostics"),
                "SecurityLog": _("SecurityLog: security events"),
            },
        ),
    )

    def _payload(self) -> dict[str, Any]:
        data = self.cleaned_data
        log = self.optional(
            oldestTimestamp=_utc(data["start_time"]),
            latestTimestamp=_utc(data["stop_time"]),
        )
        return self.optional(
            logType=data["log_type"], log=log, retries=data["retries"], retryInterval=data["retry_interval"]
        )


class V201GetReportForm(V201CommandForm):
    """Like GetBaseReport, narrowed to components with a state or to named components and variables."""

    action = "GetReport"
    component_criteria = forms.MultipleChoiceField(
        label=_("components that are"),
        required=False,
        choices=enum_choices(
            v201.ComponentCriterionEnumType, allowed=schema_enum("GetReport", "2.0.1", "componentCriteria")
        ),
        widget=forms.CheckboxSelectMultiple,
    )
    component_variables = forms.CharField(
        label=_("components and variables"),
        required=False,
        widget=forms.Textarea(attrs={"rows": 4, "cols": 60}),
        help_text=format_lazy(
            _("{reference} The variable may be left out: Component alone reports all of it."),
            reference=REFERENCE_HELP,
        ),
    )

    def clean_component_variables(self) -> list[dict[str, Any]]:
        return reference_lines(self.cleaned_data["component_variables"], variable_required=False)

    def build_payload(self) -> dict[str, Any]:
        data = self.cleaned_data
        return self.optional(
            componentCriteria=data["component_criteria"] or None,
            componentVariable=data["component_variables"] or None,
        )


class V201GetVariablesForm(V201CommandForm):
    """The answer updates the stored device model (values the charger returned Accepted)."""

    action = "GetVariables"
    variables = forms.CharField(
        label=_("variables"), widget=forms.Textarea(attrs={"rows": 6, "cols": 60}), help_text=REFERENCE_HELP
    )
    attribute_type = forms.ChoiceField(
        label=_("attribute"),
        initial=v201.AttributeEnumType.actual,
        choices=enum_choices(v201.AttributeEnumType),
    )

    def clean_variables(self) -> list[dict[str, Any]]:
        return reference_lines(self.cleaned_data["variables"])

    def build_payload(self) -> dict[str, Any]:
        attribute = self.cleaned_data["attribute_type"]
        return {
            "getVariableData": [
                {**reference, "attributeType": attribute} for reference in self.cleaned_data["variables"]
            ]
        }


class V201RequestStartTransactionForm(V201CommandForm):
    """The remoteStartId is the command's id: the TransactionEvent that reports the started transaction
    carries it, and the session records it."""

    action = "RequestStartTransaction"
    connector_fields = {"evse_id": False}
    id_token = v201_id_token_field()
    id_token_type = id_token_type_field()
    evse_id = evse_field(required=False, help_text=_("Empty: the charger chooses."))
    group_id_token = v201_id_token_field(_("group id token"), required=False)
    charging_profile = charging_profile_field(
        required=False,
        help_text=format_lazy(
            _("Optional OCPP 2.0.1 ChargingProfile with purpose TxProfile, e.g. {example}"),
            example=V201_PROFILE_EXAMPLE.replace("TxDefaultProfile", "TxProfile"),
        ),
    )

    def clean_charging_profile(self) -> dict[str, Any] | None:
        profile = json_object(self.cleaned_data["charging_profile"], required=False)
        if profile is not None and profile.get("chargingProfilePurpose") != "TxProfile":
            raise forms.ValidationError(_("A charging profile sent with a start has purpose TxProfile."))
        return profile

    def build_payload(self) -> dict[str, Any]:
        data = self.cleaned_data
        group = data["group_id_token"]
        return self.optional(
            idToken={"idToken": data["id_token"], "type": data["id_token_type"]},
            evseId=data["evse_id"],
            groupIdToken={"idToken": group, "type": str(v201.IdTokenEnumType.central)} if group else None,
            chargingProfile=data["charging_profile"],
        )


class V201RequestStopTransactionForm(ActiveTransactionMixin, V201CommandForm):
    action = "RequestStopTransaction"
    transaction_id = forms.CharField(
        label=_("transaction id"), max_length=36, help_text=_("The id the charger gave the transaction.")
    )

    def setup(self) -> None:
        self.offer_active_transactions("transaction_id")

    def build_payload(self) -> dict[str, Any]:
        return {"transactionId": self.cleaned_data["transaction_id"]}


class V201ReserveNowForm(V201CommandForm):
    action = "ReserveNow"
    connector_fields = {"evse_id": False}
    reservation_id = _int(_("reservation id"))
    expiry_date = datetime_field(_("reserved until"))
    id_token = v201_id_token_field()
    id_token_type = id_token_type_field()
    evse_id = evse_field(required=False, help_text=_("Empty: any EVSE (if the charger allows it)."))
    connector_type = forms.ChoiceField(
        label=_("connector type"),
        required=False,
        choices=[
            ("", _("any")),
            *enum_choices(
                v201.ConnectorEnumType, allowed=schema_enum("ReserveNow", "2.0.1", "connectorType")
            ),
        ],
    )
    group_id_token = v201_id_token_field(_("group id token"), required=False)

    def clean_expiry_date(self) -> datetime:
        value = self.cleaned_data["expiry_date"]
        if value <= clock.now():
            raise forms.ValidationError(_("The reservation must end in the future."))
        return value

    def build_payload(self) -> dict[str, Any]:
        data = self.cleaned_data
        group = data["group_id_token"]
        return self.optional(
            id=data["reservation_id"],
            expiryDateTime=_utc(data["expiry_date"]),
            idToken={"idToken": data["id_token"], "type": data["id_token_type"]},
            evseId=data["evse_id"],
            connectorType=data["connector_type"],
            groupIdToken={"idToken": group, "type": str(v201.IdTokenEnumType.central)} if group else None,
        )


class V201ResetForm(V201CommandForm):
    action = "Reset"
    connector_fields = {"evse_id": False}
    type = forms.ChoiceField(
        label=_("type"),
        initial=v201.ResetEnumType.on_idle,
        choices=enum_choices(
            v201.ResetEnumType,
            {
                "Immediate": _("Immediate: stop transactions and restart now"),
                "OnIdle": _("OnIdle: restart once no transaction is running"),
            },
        ),
    )
    evse_id = evse_field(required=False, help_text=_("Empty: the whole charging station."))

    def build_payload(self) -> dict[str, Any]:
        return self.optional(type=self.cleaned_data["type"], evseId=self.cleaned_data["evse_id"])


class V201SendLocalListForm(SendLocalListForm):
    version = "2.0.1"


class V201SetChargingProfileForm(V201CommandForm):
    action = "SetChargingProfile"
    connector_fields = {"evse_id": True}
    evse_id = evse_field(
        allow_zero=True, help_text=_("0: the whole station (or every EVSE, for a TxDefaultProfile).")
    )
    charging_profile = charging_profile_field()

    def clean_charging_profile(self) -> dict[str, Any] | None:
        return json_object(self.cleaned_data["charging_profile"])

    def build_payload(self) -> dict[str, Any]:
        data = self.cleaned_data
        return {"evseId": data["evse_id"], "chargingProfile": data["charging_profile"]}


class V201SetVariablesForm(V201CommandForm):
    """Values the charger accepts update the stored device model. A new Basic-auth password has its own
    field: it is stored masked and the charger must present it once it accepts."""

    action = "SetVariables"
    assignments = forms.CharField(
        label=_("variables"),
        required=False,
        widget=forms.Textarea(attrs={"rows": 6, "cols": 60}),
        help_text=format_lazy(
            _("{reference} Each line sets a value: OCPPCommCtrlr.HeartbeatInterval = 300."),
            reference=REFERENCE_HELP,
        ),
    )
    attribute_type = forms.ChoiceField(
        label=_("attribute"),
        initial=v201.AttributeEnumType.actual,
        choices=enum_choices(v201.AttributeEnumType),
    )
    basic_auth_password = forms.CharField(
        label=_("new Basic-auth password"),
        required=False,
        strip=False,
        widget=forms.PasswordInput(render_value=False),
        help_text=_(
            "Sets SecurityCtrlr.BasicAuthPassword (16 to 40 printable characters). Once the charger "
            "accepts it, it must use it to connect."
        ),
    )

    def clean_assignments(self) -> list[dict[str, Any]]:
        items = reference_lines(self.cleaned_data["assignments"], with_values=True)
        for item in items:
            if item["variable"]["name"].casefold() == "basicauthpassword":
                raise forms.ValidationError(_("Set BasicAuthPassword in its own field, where it is hidden."))
        return items

    def clean_basic_auth_password(self) -> str:
        password = self.cleaned_data["basic_auth_password"]
        if password:
            keys.validate_key(password)  # the reason is shown on the field
        return password

    def clean(self) -> dict[str, Any]:
        data = self.cleaned_data
        if not self.errors and not data.get("assignments") and not data.get("basic_auth_password"):
            raise forms.ValidationError(_("Give at least one variable to set, or a new password."))
        return super().clean()

    def build_payload(self) -> dict[str, Any]:
        data = self.cleaned_data
        attribute = data["attribute_type"]
        items = [
            {
                "component": item["component"],
                "variable": item["variable"],
                "attributeType": attribute,
                "attributeValue": item["value"],
            }
            for item in data["assignments"]
        ]
        if data["basic_auth_password"]:
            items.append(
                {
                    "component": {"name": "SecurityCtrlr"},
                    "variable": {"name": "BasicAuthPassword"},
                    "attributeValue": data["basic_auth_password"],
                }
            )
        return {"setVariableData": items}


class V201TriggerMessageForm(V201CommandForm):
    action = "TriggerMessage"
    connector_fields = {"evse_id": False}
    requested_message = forms.ChoiceField(
        label=_("message"),
        choices=enum_choices(
            v201.MessageTriggerEnumType, allowed=schema_enum("TriggerMessage", "2.0.1", "requestedMessage")
        ),
    )
    evse_id = evse_field(
        required=False, help_text=_("For StatusNotification, MeterValues and TransactionEvent; empty: all.")
    )
    connector_id = connector_field(
        required=False, help_text=_("A connector of that EVSE (StatusNotification).")
    )

    def clean(self) -> dict[str, Any]:
        self.require_evse_for_connector()
        return super().clean()

    def build_payload(self) -> dict[str, Any]:
        data = self.cleaned_data
        return self.optional(
            requestedMessage=data["requested_message"],
            evse=evse_object(data["evse_id"], data["connector_id"]),
        )


class V201UnlockConnectorForm(V201CommandForm):
    action = "UnlockConnector"
    connector_fields = {"evse_id": False}
    evse_id = evse_field()
    connector_id = connector_field(help_text=_("Usually 1: the EVSE's only connector."))

    def setup(self) -> None:
        self.fields["connector_id"].initial = 1

    def build_payload(self) -> dict[str, Any]:
        return {"evseId": self.cleaned_data["evse_id"], "connectorId": self.cleaned_data["connector_id"]}


class V201UpdateFirmwareForm(UpdateFirmwareForm):
    """The charger downloads an uploaded firmware file (firmware.location) and reports progress in
    FirmwareStatusNotification messages whose requestId is the command's id."""

    version = "2.0.1"
    field_order = ["firmware", "retrieve_date", "install_date"]
    install_date = datetime_field(
        _("install at"), required=False, help_text=_("UTC; empty: as soon as it is downloaded.")
    )

    def build_payload(self) -> dict[str, Any]:
        data = self.cleaned_data
        firmware = self.optional(
            location=transfers.firmware_url(firmware=data["firmware"], base_url=str(self.context.base_url)),
            retrieveDateTime=_utc(data["retrieve_date"]),
            installDateTime=_utc(data["install_date"]),
        )
        return self.optional(firmware=firmware, retries=data["retries"], retryInterval=data["retry_interval"])


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
        fields = ("organisation", "name")

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
