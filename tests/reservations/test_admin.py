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


def test_operator_reserves_through_the_service_on_own_chargers_only(client):
    from apps.accounts.models import IdToken
    from tests.factories import ChargePointFactory, ConnectorFactory, EvseFactory, IdTokenFactory
    from tests.reservations.test_services import _online

    staff = StaffUserFactory(role="Operator admin")
    mine = ChargePointFactory(organisation=staff.organisation)
    ConnectorFactory(evse=EvseFactory(charge_point=mine, evse_id=1), status="Available")
    _online(mine.identity)
    theirs = ChargePointFactory()
    card = IdTokenFactory(uid="04A1B2C3")
    client.force_login(staff)
    url = reverse("admin:reservations_reservation_add")
    page = client.get(url)
    assert page.status_code == 200
    assert mine.identity in page.content.decode() and theirs.identity not in page.content.decode()
    form = {"connector": "1", "id_tag": card.uid, "expires_at_0": "2099-01-01", "expires_at_1": "10:00:00"}
    refused = client.post(url, {**form, "charge_point": theirs.pk})
    assert refused.status_code == 200 and not Reservation.objects.exists()
    answer = client.post(url, {**form, "charge_point": mine.pk})
    reservation = Reservation.objects.get()
    assert answer.status_code == 302 and answer["Location"].endswith(f"/{reservation.pk}/change/")
    assert (reservation.charge_point_id, reservation.evse_id, reservation.created_by) == (mine.pk, 1, "admin")
    command = OcppCommand.objects.get(pk=reservation.reserve_command_id)
    assert command.action == "ReserveNow" and command.payload["reservationId"] == reservation.pk
    assert command.payload["idTag"] == IdToken.objects.get(pk=card.pk).uid
    # Any connector on a charger that has not said it supports that: the service's error, on the form.
    again = client.post(url, {**form, "charge_point": mine.pk, "connector": ""})
    assert (
        again.status_code == 200 and "does not take reservations for any connector" in again.content.decode()
    )
    assert Reservation.objects.count() == 1
