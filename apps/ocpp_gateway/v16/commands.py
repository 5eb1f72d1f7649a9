"""OCPP 1.6J commands: one typed form per command a 1.6 charger takes, and the version's catalogue."""

from __future__ import annotations

from datetime import datetime
from typing import Any, cast

from django import forms
from django.utils.translation import gettext_lazy as _
from ocpp.v16 import enums as v16

from apps.charging.choices import SessionStatus
from apps.charging.models import ChargingSession
from apps.ocpp_gateway import localauth, transfers
from apps.ocpp_gateway.forms import (
    INT32_MAX,
    CommandForm,
    DatalistInput,
    _int,
    _utc,
    catalogue,
    connector_field,
    datetime_field,
    enum_choices,
    id_tag_field,
    schema_enum,
)
from apps.ocpp_gateway.models import FirmwareFile, OcppCommand
from apps.reservations.choices import ACTIVE_STATUSES
from apps.reservations.models import Reservation
from apps.reservations.services import reservation_cancel, reservation_create_for_token
from cpo import clock
from cpo.exceptions import ApplicationError, Conflict


class CancelReservationForm(CommandForm):
    """Cancel one of the charger's active reservations, chosen (never typed), through the reservations
    service (the record and the charger agree)."""

    action = "CancelReservation"
    reservation = forms.TypedChoiceField(label=_("reservation"), coerce=int, choices=[])

    def setup(self) -> None:
        active = Reservation.objects.filter(
            charge_point=self.context.charge_point, status__in=ACTIVE_STATUSES
        ).order_by("pk")
        cast(forms.TypedChoiceField, self.fields["reservation"]).choices = [
            (
                r.pk,
                _("#{id}: connector {no}, {tag}, until {until}").format(
                    id=r.pk, no=r.evse_id, tag=r.id_tag, until=r.expires_at.strftime("%Y-%m-%d %H:%M UTC")
                ),
            )
            for r in active
        ]

    def build_payload(self) -> None:
        return None  # sent by reservation_cancel

    def send(self, *, source: str) -> OcppCommand:
        reservation = Reservation.objects.get(pk=self.cleaned_data["reservation"])
        reservation = reservation_cancel(reservation=reservation, actor=self.context.actor, source=source)
        if reservation.cancel_command_id is None:
            raise Conflict(_("This reservation has ended already."), code="reservation_ended")
        return OcppCommand.objects.get(pk=reservation.cancel_command_id)


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
    """Reserve a connector for a known card or token through the reservations service: the reservation id
    is ours (allocated there), never typed."""

    action = "ReserveNow"
    connector_fields = {"connector_id": True}
    connector_id = connector_field()
    expiry_date = datetime_field(_("reserved until"))
    id_tag = id_tag_field()

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
            evse_id=data["connector_id"],
            uid=data["id_tag"],
            expires_at=data["expiry_date"],
            actor=self.context.actor,
            source=source,
        )
        return OcppCommand.objects.get(pk=reservation.reserve_command_id)


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


CATALOGUE = catalogue(
    "1.6",
    (CancelReservationForm, _("Cancel a reservation.")),
    (ChangeAvailabilityForm, _("Make a connector or the whole charger (in)operative.")),
    (ChangeConfigurationForm, _("Set a configuration key.")),
    (ClearCacheForm, _("Empty the charger's authorisation cache.")),
    (ClearChargingProfileForm, _("Remove charging profiles.")),
    (DataTransferForm, _("Send vendor-specific data.")),
    (GetCompositeScheduleForm, _("Ask for the schedule that results from all charging profiles.")),
    (GetConfigurationForm, _("Read configuration keys.")),
    (GetDiagnosticsForm, _("Have the charger upload a diagnostics file.")),
    (GetLocalListVersionForm, _("Ask for the version of the charger's local authorisation list.")),
    (RemoteStartTransactionForm, _("Start charging for an id tag.")),
    (RemoteStopTransactionForm, _("Stop a transaction.")),
    (ReserveNowForm, _("Reserve a connector for an id tag.")),
    (ResetForm, _("Restart the charger.")),
    (SendLocalListForm, _("Send the charger its local authorisation list.")),
    (SetChargingProfileForm, _("Install a charging profile.")),
    (TriggerMessageForm, _("Have the charger send a message now.")),
    (UnlockConnectorForm, _("Unlock a connector.")),
    (UpdateFirmwareForm, _("Install an uploaded firmware file.")),
)
