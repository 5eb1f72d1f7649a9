"""OCPP 2.1: the charger's requests. The messages the gateway handles are those of 2.0.1 with optional
members added (cost details, limits, tariffs, V2X), so the 2.0.1 handlers serve them; what differs is
handled here.

- An idToken may be up to 255 characters in 2.1 (36 in 2.0.1), more than any token we issue or store:
  such a token is answered Invalid and the transaction is recorded without it.

The 2.1 schemas validate both directions (the connection picks them by version), and OCPP-J 2.1's
CALLRESULTERROR and SEND frames are handled by the connection (`versions.V21.extra_message_types`).
"""

from __future__ import annotations

from typing import Any

from ocpp.routing import on
from ocpp.v21 import call_result
from ocpp.v21.enums import Action

from apps.ocpp_gateway.v201 import handlers as v201

KNOWN_ACTIONS = frozenset(a.value for a in Action)
# The longest token uid we store (accounts.IdToken.uid, ChargingSession.id_tag).
ID_TOKEN_MAX_LENGTH = 36


def _invalid() -> dict[str, Any]:
    return {"status": "Invalid"}


def _too_long(id_token: dict[str, Any] | None) -> bool:
    return id_token is not None and len(str(id_token.get("id_token", ""))) > ID_TOKEN_MAX_LENGTH


class ChargingStationHandlers(v201.ChargingStationHandlers):
    @on(Action.authorize)
    async def on_authorize(self, id_token: dict[str, Any], **kwargs: Any) -> call_result.Authorize:
        if _too_long(id_token):
            return call_result.Authorize(id_token_info=_invalid())
        return await super().on_authorize(id_token=id_token, **kwargs)

    @on(Action.transaction_event)
    async def on_transaction_event(self, **kwargs: Any) -> call_result.TransactionEvent:
        if not _too_long(kwargs.get("id_token")):
            return await super().on_transaction_event(**kwargs)
        answer = await super().on_transaction_event(**{**kwargs, "id_token": None})
        answer.id_token_info = _invalid()
        return answer
