"""What a party may read from us (the senders' GET lists): our published locations, our public tariffs,
the sessions and CDRs of its own drivers. Lists are ordered oldest first (stable pages) and filtered by
`last_updated` (date_from inclusive, date_to exclusive)."""

from __future__ import annotations

from datetime import datetime

from django.db.models import DateTimeField, Max, Prefetch, Q, QuerySet
from django.db.models.functions import Coalesce, Greatest

from apps.roaming.models import Party, RoamingSession
from apps.stations.models import ChargePoint, Connector, Evse, Location
from apps.tariffs.models import ChargeDetailRecord, Tariff, TariffAssignment
from apps.tariffs.selectors import tariff_in_force
from cpo import clock


def _window(qs: QuerySet, field: str, date_from: datetime | None, date_to: datetime | None) -> QuerySet:
    if date_from is not None:
        qs = qs.filter(**{f"{field}__gte": date_from})
    if date_to is not None:
        qs = qs.filter(**{f"{field}__lt": date_to})
    return qs


def location_qs_for(*, party: Party) -> QuerySet[Location]:
    """The party's operator's published locations, each annotated with `ocpi_last_updated`: the latest
    change of the location, its charge points or its connectors' status."""
    return (
        Location.objects.filter(organisation_id=party.organisation_id, is_published=True)
        .annotate(
            ocpi_last_updated=Greatest(
                "updated_at",
                Coalesce(Max("charge_points__updated_at"), "updated_at"),
                Coalesce(Max("charge_points__evses__connectors__status_received_at"), "updated_at"),
                output_field=DateTimeField(),
            )
        )
        .select_related("organisation")
        .prefetch_related(
            Prefetch(
                "charge_points",
                queryset=ChargePoint.objects.order_by("identity").prefetch_related(
                    Prefetch(
                        "evses",
                        queryset=Evse.objects.order_by("evse_id").prefetch_related(
                            Prefetch("connectors", queryset=Connector.objects.order_by("connector_id"))
                        ),
                    )
                ),
            )
        )
    )


def location_list_for(
    *, party: Party, date_from: datetime | None, date_to: datetime | None
) -> QuerySet[Location]:
    return _window(location_qs_for(party=party), "ocpi_last_updated", date_from, date_to).order_by(
        "created_at", "pk"
    )


def tariff_ids_for(locations: list[Location]) -> dict[int, list[str]]:
    """The tariff in force (for a driver without an override) at each connector, by connector pk."""
    now = clock.now()
    out: dict[int, list[str]] = {}
    for location in locations:
        for cp in location.charge_points.all():
            for evse in cp.evses.all():
                for connector in evse.connectors.all():
                    tariff = tariff_in_force(charge_point=cp, connector=connector, at=now)
                    if tariff is not None:
                        out[connector.pk] = [str(tariff.pk)]
    return out


def tariff_list_for(
    *, party: Party, date_from: datetime | None, date_to: datetime | None
) -> QuerySet[Tariff]:
    """The operator's tariffs that apply to every driver somewhere (an assignment without a customer
    account or token group): what roaming drivers pay."""
    public = TariffAssignment.objects.filter(
        organisation_id=party.organisation_id, customer_account__isnull=True, token_group_id=""
    ).values("tariff_id")
    return _window(
        Tariff.objects.filter(organisation_id=party.organisation_id, pk__in=public)
        .select_related("organisation")
        .prefetch_related("elements"),
        "updated_at",
        date_from,
        date_to,
    ).order_by("created_at", "pk")


def session_list_for(
    *, party: Party, date_from: datetime | None, date_to: datetime | None
) -> QuerySet[RoamingSession]:
    qs = RoamingSession.objects.filter(party=party).select_related(
        "party", "token", "session", "session__charge_point", "session__connector"
    )
    if date_from is not None:
        qs = qs.filter(Q(session__stopped_at__gte=date_from) | Q(session__stopped_at__isnull=True))
    if date_to is not None:
        qs = qs.filter(created_at__lt=date_to)
    return qs.order_by("created_at", "pk")


def cdr_list_for(
    *, party: Party, date_from: datetime | None, date_to: datetime | None
) -> QuerySet[ChargeDetailRecord]:
    """Every issued record (CDRs and credits) of the party's roaming sessions, by issue time."""
    sessions = RoamingSession.objects.filter(party=party).values("session_id")
    return _window(
        ChargeDetailRecord.objects.filter(session_id__in=sessions).select_related(
            "charge_point", "charge_point__location", "credits", "session", "session__connector"
        ),
        "issued_at",
        date_from,
        date_to,
    ).order_by("issued_at", "pk")
