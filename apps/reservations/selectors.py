"""Reads of reservations."""

from __future__ import annotations

from typing import Any

from django.db.models import QuerySet
from django.utils.translation import gettext as _

from apps.accounts.models import User
from apps.reservations.choices import ACTIVE_STATUSES
from apps.reservations.models import ANY_EVSE, Reservation
from cpo.exceptions import NotFound


def reservation_list(*, driver: User) -> QuerySet[Reservation]:
    """The driver's reservations, newest first."""
    return (
        Reservation.objects.filter(driver=driver)
        .select_related("charging_session")
        .order_by("-created_at", "-id")
    )


def reservation_get(*, driver: User, pk: Any) -> Reservation:
    """The driver's own reservation; another driver's (or none) is not_found (404)."""
    try:
        pk = int(pk)
    except (TypeError, ValueError):
        pk = None
    reservation = reservation_list(driver=driver).filter(pk=pk).first() if pk is not None else None
    if reservation is None:
        raise NotFound(_("No reservation with id {id}.").format(id=pk), code="reservation_not_found")
    return reservation


def reservation_for_session(
    *, driver_id: int, charge_point_id: int, evse_id: int, charging_session_id: int | None
) -> Reservation | None:
    """The driver's reservation behind a driver session: the one its transaction consumed, or, before the
    transaction started, the driver's active reservation of that EVSE (or of any connector of the
    charger)."""
    mine = Reservation.objects.filter(driver_id=driver_id, charge_point_id=charge_point_id)
    if charging_session_id is not None:
        consumed = mine.filter(charging_session_id=charging_session_id).first()
        if consumed is not None:
            return consumed
    return (
        mine.filter(status__in=ACTIVE_STATUSES, evse_id__in=(evse_id, ANY_EVSE)).order_by("-evse_id").first()
    )
