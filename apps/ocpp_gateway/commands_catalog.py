"""The commands the product can send to a charger: those of the OCPP version it speaks (its
`ocpp_protocol`), each with its typed form and a one-line description for operators. Each version's
catalogue lives in its package (`v16/commands.py`, `v201/commands.py`, `v21/commands.py`) and is found
through the versions registry.

`command_send_form` is the one way an interface sends a command composed in a form: the form only
validates input and hands it to the command service (`command_send`, which validates the payload once,
records the command, its audit record and whatever it refers to, and hands it over on commit), exactly as
`ocpp_call` and the API do, so a refused payload leaves nothing behind.
"""

from __future__ import annotations

from collections.abc import Mapping

from django.utils.translation import gettext_lazy as _

from apps.ocpp_gateway import forms as f
from apps.ocpp_gateway import versions
from apps.ocpp_gateway.forms import CommandSpec
from apps.ocpp_gateway.models import OcppCommand
from apps.stations.models import ChargePoint
from cpo.exceptions import NotFound

__all__ = ["CommandSpec", "catalogue_for", "command_send_form", "command_spec"]


def catalogue_for(charge_point: ChargePoint) -> Mapping[str, CommandSpec]:
    """The commands the charger may be sent, by action name (empty for a protocol we do not speak)."""
    try:
        return versions.for_charge_point(charge_point).catalogue
    except versions.UnknownVersion:
        return {}


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
