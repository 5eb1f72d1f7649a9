"""OCPP 2.1 commands: the version's catalogue. Where a command's 2.1 message is the 2.0.1 one with
optional members added, its form is the 2.0.1 form checked against the 2.1 schema; Reset also offers
2.1's ImmediateAndResume."""

from __future__ import annotations

from django import forms
from django.utils.translation import gettext_lazy as _
from ocpp.v21 import enums as v21

from apps.ocpp_gateway.forms import catalogue, enum_choices
from apps.ocpp_gateway.v201 import commands as v201

VERSION = "2.1"


class V21ChangeAvailabilityForm(v201.V201ChangeAvailabilityForm):
    version = VERSION


class V21ClearCacheForm(v201.V201ClearCacheForm):
    version = VERSION


class V21GetBaseReportForm(v201.V201GetBaseReportForm):
    version = VERSION


class V21GetVariablesForm(v201.V201GetVariablesForm):
    version = VERSION


class V21RequestStartTransactionForm(v201.V201RequestStartTransactionForm):
    version = VERSION


class V21RequestStopTransactionForm(v201.V201RequestStopTransactionForm):
    version = VERSION


class V21ResetForm(v201.V201ResetForm):
    version = VERSION
    type = forms.ChoiceField(
        label=_("type"),
        initial=v21.ResetEnumType.on_idle,
        choices=enum_choices(
            v21.ResetEnumType,
            {
                "Immediate": _("Immediate: stop transactions and restart now"),
                "OnIdle": _("OnIdle: restart once no transaction is running"),
                "ImmediateAndResume": _("ImmediateAndResume: restart now and resume the transactions"),
            },
        ),
    )


class V21SetVariablesForm(v201.V201SetVariablesForm):
    version = VERSION


class V21UnlockConnectorForm(v201.V201UnlockConnectorForm):
    version = VERSION


CATALOGUE = catalogue(
    VERSION,
    (V21ChangeAvailabilityForm, _("Make the station, an EVSE or a connector (in)operative.")),
    (V21ClearCacheForm, _("Empty the charger's authorisation cache.")),
    (V21GetBaseReportForm, _("Have the charger report its device model (stored as it arrives).")),
    (V21GetVariablesForm, _("Read variables of the device model.")),
    (V21RequestStartTransactionForm, _("Start charging for an id token.")),
    (V21RequestStopTransactionForm, _("Stop a transaction.")),
    (V21ResetForm, _("Restart the station or one EVSE, now or once idle.")),
    (V21SetVariablesForm, _("Set variables of the device model, or a new Basic-auth password.")),
    (V21UnlockConnectorForm, _("Unlock a connector.")),
)
