"""The catalogue of commands the product can send to a charger, per OCPP version: each with its typed
form and a one-line description for operators. A charger is offered the commands of the version it
speaks (its `ocpp_protocol`): OCPP 1.6 and 2.0.1 each have their table.

`command_send_form` is the one way an interface sends a command composed in a form: the form only
validates input and hands it to the command service (`command_send`, which validates the payload once,
records the command, its audit record and whatever it refers to, and hands it over on commit), exactly as
`ocpp_call` and the API do, so a refused payload leaves nothing behind.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from django.utils.translation import gettext_lazy as _

from apps.ocpp_gateway import forms as f
from apps.ocpp_gateway.models import OcppCommand
from apps.stations.models import ChargePoint
from cpo.exceptions import NotFound


@dataclass(frozen=True)
class CommandSpec:
    """One command of one OCPP version: its action name, form and what it does."""

    action: str
    version: str
    form_class: type[f.CommandForm]
    description: Any


def _specs(version: str, *entries: tuple[type[f.CommandForm], Any]) -> dict[str, CommandSpec]:
    return {
        form.action: CommandSpec(form.action, version, form, description) for form, description in entries
    }


CATALOGUE: dict[str, dict[str, CommandSpec]] = {
    "1.6": _specs(
        "1.6",
        (f.CancelReservationForm, _("Cancel a reservation.")),
        (f.ChangeAvailabilityForm, _("Make a connector or the whole charger (in)operative.")),
        (f.ChangeConfigurationForm, _("Set a configuration key.")),
        (f.ClearCacheForm, _("Empty the charger's authorisation cache.")),
        (f.ClearChargingProfileForm, _("Remove charging profiles.")),
        (f.DataTransferForm, _("Send vendor-specific data.")),
        (f.GetCompositeScheduleForm, _("Ask for the schedule that results from all charging profiles.")),
        (f.GetConfigurationForm, _("Read configuration keys.")),
        (f.GetDiagnosticsForm, _("Have the charger upload a diagnostics file.")),
        (f.GetLocalListVersionForm, _("Ask for the version of the charger's local authorisation list.")),
        (f.RemoteStartTransactionForm, _("Start charging for an id tag.")),
        (f.RemoteStopTransactionForm, _("Stop a transaction.")),
        (f.ReserveNowForm, _("Reserve a connector for an id tag.")),
        (f.ResetForm, _("Restart the charger.")),
        (f.SendLocalListForm, _("Send the charger its local authorisation list.")),
        (f.SetChargingProfileForm, _("Install a charging profile.")),
        (f.TriggerMessageForm, _("Have the charger send a message now.")),
        (f.UnlockConnectorForm, _("Unlock a connector.")),
        (f.UpdateFirmwareForm, _("Install an uploaded firmware file.")),
    ),
    "2.0.1": _specs(
        "2.0.1",
        (f.V201CancelReservationForm, _("Cancel a reservation.")),
        (f.V201ChangeAvailabilityForm, _("Make the station, an EVSE or a connector (in)operative.")),
        (f.V201ClearCacheForm, _("Empty the charger's authorisation cache.")),
        (f.V201ClearChargingProfileForm, _("Remove charging profiles.")),
        (f.V201CostUpdatedForm, _("Tell the charger the running cost of a transaction.")),
        (f.V201DataTransferForm, _("Send vendor-specific data.")),
        (f.V201GetBaseReportForm, _("Have the charger report its device model (stored as it arrives).")),
        (f.V201GetChargingProfilesForm, _("Have the charger report its charging profiles.")),
        (f.V201GetCompositeScheduleForm, _("Ask for the schedule that results from all charging profiles.")),
        (f.V201GetLocalListVersionForm, _("Ask for the version of the charger's local authorisation list.")),
        (f.V201GetLogForm, _("Have the charger upload a diagnostics or security log.")),
        (f.V201GetReportForm, _("Have the charger report selected components and variables.")),
        (f.V201GetVariablesForm, _("Read variables of the device model.")),
        (f.V201RequestStartTransactionForm, _("Start charging for an id token.")),
        (f.V201RequestStopTransactionForm, _("Stop a transaction.")),
        (f.V201ReserveNowForm, _("Reserve an EVSE for an id token.")),
        (f.V201ResetForm, _("Restart the station or one EVSE, now or once idle.")),
        (f.V201SendLocalListForm, _("Send the charger its local authorisation list.")),
        (f.V201SetChargingProfileForm, _("Install a charging profile.")),
        (f.V201SetVariablesForm, _("Set variables of the device model, or a new Basic-auth password.")),
        (f.V201TriggerMessageForm, _("Have the charger send a message now.")),
        (f.V201UnlockConnectorForm, _("Unlock a connector.")),
        (f.V201UpdateFirmwareForm, _("Install an uploaded firmware file.")),
    ),
}


def charge_point_version(charge_point: ChargePoint) -> str:
    """The OCPP version the charger speaks (1.6 until it tells us otherwise)."""
    return f.CommandContext(charge_point=charge_point).version


def catalogue_for(charge_point: ChargePoint) -> dict[str, CommandSpec]:
    """The commands the charger may be sent, by action name (empty for a version without a catalogue)."""
    return CATALOGUE.get(charge_point_version(charge_point), {})


def command_spec(*, charge_point: ChargePoint, action: str) -> CommandSpec:
    """The catalogue entry for `action` at the charger's version. NotFound when there is none."""
    spec = catalogue_for(charge_point).get(action)
    if spec is None:
        raise NotFound(
            _("{action} is not a command for this charger's OCPP version.").format(action=action),
            code="unknown_action",
        )
    return spec


def command_send_form(*, form: f.CommandForm, source: str = "admin") -> OcppCommand:
    """Send the command a valid form composed, as the form context's actor, through the service the form
    names (`CommandForm.send`). Raises what `command_send` raises (ValidationFailed for a payload the schema
    refuses); nothing is stored then."""
    return form.send(source=source)
