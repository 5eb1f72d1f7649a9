"""Locations and tariffs PUT to the parties' receivers when they change (Locations and Tariffs modules,
CPO as sender; push mode). A periodic task (Celery beat, every minute) compares each published location's
and public tariff's `updated_at` with the last PUT of it to each registered party with the receiver, and
PUTs the whole object again when it changed since (EVSE status changes go out at once as PATCHes, see
apps.roaming.sessions). Parties without a receiver pull (GET) instead."""

from __future__ import annotations

from datetime import datetime

from django.db import transaction
from django.db.models import Max

from apps.roaming import pushes
from apps.roaming.choices import PartyStatus
from apps.roaming.models import Party, Push
from apps.roaming.objects import location_object, our_identity, tariff_object
from apps.roaming.selectors import location_qs_for, tariff_ids_for, tariff_list_for
from apps.tariffs.selectors import tariff_spec_build, vat_rate_for
from cpo import clock


def _last_pushed(party: Party, module: str) -> dict[str, datetime]:
    return dict(
        Push.objects.filter(party=party, module=module, method="PUT")
        .values("object_key")
        .annotate(at=Max("created_at"))
        .values_list("object_key", "at")
    )


@transaction.atomic
def party_objects_sync(*, party: Party) -> int:
    """PUT the party's operator's locations and tariffs changed since their last PUT to it. Returns how
    many pushes were made."""
    cc, pid = our_identity()
    made = 0
    locations_url = party.endpoint("locations", "RECEIVER")
    if locations_url:
        last = _last_pushed(party, "locations")
        changed = [
            location
            for location in location_qs_for(party=party)
            if (at := last.get(f"location:{location.pk}")) is None or location.updated_at > at
        ]
        ids = tariff_ids_for(changed)
        for location in changed:
            pushes.push_create(
                party=party,
                module="locations",
                method="PUT",
                url=f"{locations_url.rstrip('/')}/{cc}/{pid}/{location.pk}",
                object_key=f"location:{location.pk}",
                body=location_object(location, tariff_ids=ids),
            )
            made += 1
    tariffs_url = party.endpoint("tariffs", "RECEIVER")
    if tariffs_url:
        last = _last_pushed(party, "tariffs")
        org = party.organisation
        vat = vat_rate_for(country=org.country, on=clock.now().date())
        for tariff in tariff_list_for(party=party, date_from=None, date_to=None):
            at = last.get(f"tariff:{tariff.pk}")
            if at is not None and tariff.updated_at <= at:
                continue
            spec = tariff_spec_build(
                tariff=tariff, elements=list(tariff.elements.all()), time_zone=org.time_zone, vat=vat
            )
            pushes.push_create(
                party=party,
                module="tariffs",
                method="PUT",
                url=f"{tariffs_url.rstrip('/')}/{cc}/{pid}/{tariff.pk}",
                object_key=f"tariff:{tariff.pk}",
                body=tariff_object(
                    spec,
                    tariff_id=str(tariff.pk),
                    last_updated=tariff.updated_at,
                    tariff_type=tariff.tariff_type,
                    valid_from=tariff.valid_from,
                    valid_until=tariff.valid_until,
                ),
            )
            made += 1
    return made


def objects_sync() -> int:
    """`party_objects_sync` for every registered party (Celery beat)."""
    return sum(
        party_objects_sync(party=party)
        for party in Party.objects.filter(status=PartyStatus.REGISTERED).select_related("organisation")
    )
