"""What the driver's live stream (GET /api/v1/sessions/{id}/live) is fed with.

A change to a driver session is published on commit to the group `driver_session.<pk>` together with
the session's public body (the API's session, without transitions), read once by the process that made
the change, and only while some stream watches the session (a lease under `watch_key`, cpo.live): an
open stream then needs no database to follow the session, however many streams are open.
"""

from __future__ import annotations

import logging
from typing import Any

from apps.charging.api.serializers import session_json
from apps.charging.driver_selectors import is_final
from apps.charging.models import DriverSession
from cpo import live

logger = logging.getLogger(__name__)
MESSAGE_TYPE = "session.update"


def group_name(driver_session_id: int) -> str:
    return f"driver_session.{driver_session_id}"


def watch_key(driver_session_id: int) -> str:
    """The lease key (cpo.live.StreamLease watch key) of the streams that follow this session."""
    return f"watch:driver_session:{driver_session_id}"


def driver_key(driver_id: int) -> str:
    """The lease key that caps one driver's open streams over all processes."""
    return f"driver:{driver_id}"


def session_body(session: DriverSession) -> dict[str, Any]:
    """What a stream shows: the API's session without its transitions (JSON-ready: str, int, None)."""
    return dict(session_json(session, with_transitions=False))


def session_body_read(pk: int) -> tuple[dict[str, Any], bool] | None:
    """(body, final) of a driver session, or None if it is gone. Reads; the caller returns the connection."""
    session = (
        DriverSession.objects.select_related("charge_point", "charge_point__location", "charging_session")
        .filter(pk=pk)
        .first()
    )
    if session is None:
        return None
    return session_body(session), is_final(session)


def session_publish(pk: int) -> None:
    """Tell the session's streams its new state (after commit). Best effort, never raises: a stream
    re-reads now and then, so a lost message only delays it."""
    try:
        if not live.watched(watch_key(pk)):
            return
        read = session_body_read(pk)
    except Exception:
        logger.warning("live update of driver session %s not published", pk, exc_info=True)
        return
    if read is not None:
        live.publish(group_name(pk), {"type": MESSAGE_TYPE, "session": read[0]})
