"""Reservations in the admin: operators see their organisations' reservations and cancel them through the
service (CancelReservation to the charger); other organisations' are neither shown nor touched."""

from __future__ import annotations

import pytest
from django.urls import reverse

from apps.ocpp_gateway.models import OcppCommand
from apps.reservations.models import Reservation
from tests.factories import ReservationFactory, StaffUserFactory

pytestmark = pytest.mark.django_db


def test_operator_sees_and_cancels_own_reservations_only(client):
    staff = StaffUserFactory(role="Operator admin")
    mine = ReservationFactory(charge_point__organisation=staff.organisation)
    mine.organisation = staff.organisation
    mine.save()
    theirs = ReservationFactory()
    client.force_login(staff)
    url = reverse("admin:reservations_reservation_changelist")
    page = client.get(url)
    assert page.status_code == 200
    assert mine.id_tag in page.content.decode() and theirs.id_tag not in page.content.decode()
    answer = client.post(url, {"action": "cancel", "_selected_action": [mine.pk, theirs.pk]}, follow=True)
    assert answer.status_code == 200
    mine.refresh_from_db()
    theirs.refresh_from_db()
    assert mine.status == "CANCELLED" and theirs.status == "RESERVED"
    command = OcppCommand.objects.get(action="CancelReservation")
    assert command.payload == {"reservationId": mine.pk} and command.charge_point_id == mine.charge_point_id
    assert Reservation.objects.filter(status="CANCELLED").count() == 1
