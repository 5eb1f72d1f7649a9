"""The commands the product can send to a charger: those of the OCPP version it speaks (its
`ocpp_protocol`), each with its typed form and a one-line description for operators. Each version's
catalogue lives in its package (`v16/commands.py`, `v201/commands.py`, `v21/commands.py`) and is found
through the versions registry.

`command_send_form` is the one way an interface sends a command composed in a form: it prepares what the
command refers to, sends it with `command_send` (which validates the payload, records the command and the
audit record) and links the two, in one transaction, so a refused payload leaves nothing behind.
"""

from __future__ import annotations

from collections.abc import Mapping

from django.db import transaction
from django.utils.translation import gettext_lazy as _

from apps.ocpp_gateway import forms as f
from apps.ocpp_gateway import versions
from apps.ocpp_gateway.forms import CommandSpec
from apps.ocpp_gateway.models import OcppCommand
from apps.ocpp_gateway.services import command_send
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
    """Send the command a valid form composed, as the form context's actor. Raises what `command_send`
    raises (ValidationFailed for a payload the schema refuses); nothing is stored then."""
    context = form.context
    with transaction.atomic():
        payload = form.prepare()
        command = command_send(
            charge_point=context.charge_point,
            action=form.action,
            payload=payload,
            timeout_s=form.deadline(),
            actor=context.actor,
            source=source,
        )
        form.sent(command)
    return command
