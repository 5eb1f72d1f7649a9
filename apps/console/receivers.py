"""What the console does when the lower apps report something (wired in ConsoleConfig.ready()). Each
receiver runs in the reporting service's transaction: what it writes commits or rolls back with it, and
what it tells live consoles is sent after commit."""

from __future__ import annotations

from datetime import datetime
from functools import partial

from django.db import transaction
from django.utils.translation import gettext as _

from apps.billing.models import Payment
from apps.console import services
from apps.console.choices import AlertKind
from apps.stations.choices import ConnectorStatus
from apps.stations.models import ChargePoint
from cpo import live


def _announce(organisation_id: int, charge_point_id: int | None, what: str) -> None:
    transaction.on_commit(
        partial(
            live.operations_publish,
            organisation_id=organisation_id,
            charge_point_id=charge_point_id,
            what=what,
        )
    )


def subject_of(evse_id: int, connector_id: int) -> str:
    return "charge point" if evse_id == 0 else f"evse {evse_id}/{connector_id}"


def status_changed(
    *,
    charge_point_id: int,
    organisation_id: int,
    evse_id: int,
    connector_id: int,
    status: str,
    previous: str,
    error_code: str,
    at: datetime,
) -> None:
    services.status_interval_record(
        charge_point_id=charge_point_id,
        evse_id=evse_id,
        connector_id=connector_id,
        status=status,
        error_code=error_code,
        at=at,
    )
    subject = subject_of(evse_id, connector_id)
    if status == ConnectorStatus.FAULTED:
        identity = ChargePoint.objects.filter(pk=charge_point_id).values_list("identity", flat=True).first()
        where = (
            _("the charge point")
            if evse_id == 0
            else _("EVSE {evse} connector {connector}").format(evse=evse_id, connector=connector_id)
        )
        services.alert_raise(
            organisation_id=organisation_id,
            kind=AlertKind.FAULTED,
            charge_point_id=charge_point_id,
            subject=subject,
            message=_("{identity}: {where} is faulted ({code}).").format(
                identity=identity, where=where, code=error_code or "-"
            ),
            detail={"evse_id": evse_id, "connector_id": connector_id, "error_code": error_code},
            at=at,
        )
    elif previous == ConnectorStatus.FAULTED:
        services.alert_resolve(
            kind=AlertKind.FAULTED, charge_point_id=charge_point_id, subject=subject, at=at
        )
    if status != previous:
        _announce(organisation_id, charge_point_id, "status")


def availability_changed(
    *, charge_point_id: int, organisation_id: int, evse_id: int, availability: str
) -> None:
    _announce(organisation_id, charge_point_id, "availability")


def charge_point_booted(*, charge_point_id: int, organisation_id: int, at: datetime) -> None:
    services.boot_noted(charge_point_id=charge_point_id, organisation_id=organisation_id, at=at)


def connections_changed(*, came_back: list[int], went_offline: list[int], at: datetime) -> None:
    services.connection_intervals_record(came_back=came_back, went_offline=went_offline, at=at)
    for charge_point_id in came_back:
        services.alert_resolve(kind=AlertKind.OFFLINE, charge_point_id=charge_point_id, at=at)


def charging_profile_answered(*, charge_point_id: int, command_id: int, accepted: bool) -> None:
    if accepted:
        services.alert_resolve(kind=AlertKind.PROFILE_REJECTED, charge_point_id=charge_point_id)
        return
    charger = ChargePoint.objects.filter(pk=charge_point_id).values("identity", "organisation_id").first()
    if charger is None:
        return
    services.alert_raise(
        organisation_id=charger["organisation_id"],
        kind=AlertKind.PROFILE_REJECTED,
        charge_point_id=charge_point_id,
        message=_("{identity} rejected a charging profile (command {command}).").format(
            identity=charger["identity"], command=command_id
        ),
        detail={"command_id": command_id},
    )


def payment_capture_failed(*, payment_id: int, organisation_id: int, reason: str) -> None:
    payment = Payment.objects.select_related("driver_session").filter(pk=payment_id).first()
    charge_point_id = payment.driver_session.charge_point_id if payment and payment.driver_session else None
    services.alert_raise(
        organisation_id=organisation_id,
        kind=AlertKind.CAPTURE_FAILED,
        charge_point_id=charge_point_id,
        subject=f"payment {payment_id}",
        message=_("Capturing payment {id} failed ({reason}); it is now a debt.").format(
            id=payment_id, reason=reason
        ),
        detail={"payment_id": payment_id, "reason": reason},
    )
