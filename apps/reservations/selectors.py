"""Reads of reservations."""

from __future__ import annotations

from typing import Any

from django.db.models import QuerySet
from django.utils.translation import gettext as _

from apps.accounts.models import User
from apps.reservations.models import Reservation
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
