"""OCPP 2.0.1 commands: one typed form per command a 2.0.1 charger takes, and the version's catalogue.
The forms are named `V201<Action>Form`; where a 1.6 form already composes the same payload, the 2.0.1
one is that form checked against the 2.0.1 schema."""

from __future__ import annotations

import json
import re
from datetime import datetime
from typing import Any, ClassVar

from django import forms
from django.utils.text import format_lazy
from django.utils.translation import gettext_lazy as _
from ocpp.v201 import enums as v201

from apps.charging.choices import SessionStatus
from apps.charging.models import ChargingSession
from apps.ocpp_gateway import transfers, versions
from apps.ocpp_gateway.forms import (
    INT32_MAX,
    CommandContext,
    CommandForm,
    DatalistInput,
    _int,
    _utc,
    catalogue,
    connector_field,
    datetime_field,
    enum_choices,
    schema_enum,
)
from apps.ocpp_gateway.models import OcppCommand
from apps.ocpp_gateway.v16.commands import (
    CancelReservationForm,
    ClearCacheForm,
    DataTransferForm,
    GetDiagnosticsForm,
    GetLocalListVersionForm,
    SendLocalListForm,
    UpdateFirmwareForm,
)
from apps.reservations.services import reservation_create_for_token
from apps.stations import keys
from cpo import clock

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
    version: ClassVar[str]

    def offer_active_transactions(self, name: str) -> None:
        active = list(
            ChargingSession.objects.filter(
                charge_point=self.context.charge_point,
                status=SessionStatus.ACTIVE,
                protocol=versions.by_key(self.version).subprotocol,
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
    """Reserve an EVSE for a known token through the reservations service: the reservation id is ours
    (allocated there), never typed."""

    action = "ReserveNow"
    connector_fields = {"evse_id": False}
    expiry_date = datetime_field(_("reserved until"))
    id_token = v201_id_token_field()
    id_token_type = id_token_type_field()
    evse_id = evse_field()

    def clean_expiry_date(self) -> datetime:
        value = self.cleaned_data["expiry_date"]
        if value <= clock.now():
            raise forms.ValidationError(_("The reservation must end in the future."))
        return value

    def build_payload(self) -> None:
        return None  # composed by the reservations service with our reservation id

    def send(self, *, source: str) -> OcppCommand:
        data = self.cleaned_data
        reservation = reservation_create_for_token(
            charge_point=self.context.charge_point,
            evse_id=data["evse_id"],
            uid=data["id_token"],
            token_type=data["id_token_type"],
            expires_at=data["expiry_date"],
            actor=self.context.actor,
            source=source,
        )
        return OcppCommand.objects.get(pk=reservation.reserve_command_id)


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


CATALOGUE = catalogue(
    "2.0.1",
    (V201CancelReservationForm, _("Cancel a reservation.")),
    (V201ChangeAvailabilityForm, _("Make the station, an EVSE or a connector (in)operative.")),
    (V201ClearCacheForm, _("Empty the charger's authorisation cache.")),
    (V201ClearChargingProfileForm, _("Remove charging profiles.")),
    (V201CostUpdatedForm, _("Tell the charger the running cost of a transaction.")),
    (V201DataTransferForm, _("Send vendor-specific data.")),
    (V201GetBaseReportForm, _("Have the charger report its device model (stored as it arrives).")),
    (V201GetChargingProfilesForm, _("Have the charger report its charging profiles.")),
    (V201GetCompositeScheduleForm, _("Ask for the schedule that results from all charging profiles.")),
    (V201GetLocalListVersionForm, _("Ask for the version of the charger's local authorisation list.")),
    (V201GetLogForm, _("Have the charger upload a diagnostics or security log.")),
    (V201GetReportForm, _("Have the charger report selected components and variables.")),
    (V201GetVariablesForm, _("Read variables of the device model.")),
    (V201RequestStartTransactionForm, _("Start charging for an id token.")),
    (V201RequestStopTransactionForm, _("Stop a transaction.")),
    (V201ReserveNowForm, _("Reserve an EVSE for an id token.")),
    (V201ResetForm, _("Restart the station or one EVSE, now or once idle.")),
    (V201SendLocalListForm, _("Send the charger its local authorisation list.")),
    (V201SetChargingProfileForm, _("Install a charging profile.")),
    (V201SetVariablesForm, _("Set variables of the device model, or a new Basic-auth password.")),
    (V201TriggerMessageForm, _("Have the charger send a message now.")),
    (V201UnlockConnectorForm, _("Unlock a connector.")),
    (V201UpdateFirmwareForm, _("Install an uploaded firmware file.")),
)
