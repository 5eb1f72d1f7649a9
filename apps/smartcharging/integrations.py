"""Utility systems (grid operators, aggregators) that declare grid events through the API, each with
the key issued to it in the admin: `<prefix>.<secret>`, shown once. The prefix finds the row; only a
salted HMAC-SHA256 of the 40-hex-digit secret is kept (apps.stations.keys: a long random secret needs no
slow password hash). A revoked integration's key is refused; issuing a new key ends the old one."""

from __future__ import annotations

import secrets
from datetime import datetime, timedelta
from decimal import Decimal
from typing import Any

from django.db import transaction
from django.db.models import QuerySet
from django.utils.translation import gettext as _

from apps.accounts.models import Organisation
from apps.accounts.services import audit_record_create
from apps.smartcharging.models import GridEvent, GridIntegration, Site
from apps.smartcharging.services import grid_event_declare
from apps.stations import keys
from apps.stations.models import Location
from cpo import clock
from cpo.exceptions import NotFound, PermissionDenied, ValidationFailed

PREFIX_START = "gi"
# last_used_at is written at most this often per integration (not on every request).
LAST_USED_RESOLUTION = timedelta(minutes=1)


def _new_key(integration: GridIntegration) -> str:
    """Give `integration` (unsaved changes) a new prefix and secret; return the key in clear text."""
    integration.key_prefix = PREFIX_START + secrets.token_hex(5)
    secret = keys.generate_key()
    integration.key_hash = keys.hash_key(secret)
    return f"{integration.key_prefix}.{secret}"


@transaction.atomic
def grid_integration_create(
    *, organisation: Organisation, name: str, actor: Any = None, source: str = "service"
) -> tuple[GridIntegration, str]:
    """A new integration for `organisation`'s sites and its key in clear text (shown once)."""
    integration = GridIntegration(organisation=organisation, name=name[:100])
    key = _new_key(integration)
    integration.save()
    audit_record_create(actor=actor, action="gridintegration.create", target=integration, source=source)
    return integration, key


def grid_integration_key_prepare(*, integration: GridIntegration) -> str:
    """For a form that saves the integration itself (the admin's add page): set a new key on the unsaved
    instance and return it in clear text."""
    return _new_key(integration)


@transaction.atomic
def grid_integration_new_key(
    *, integration: GridIntegration, actor: Any = None, source: str = "service"
) -> str:
    """Issue a new key (the old one stops working at once; a revoked integration is active again) and
    return it in clear text (shown once)."""
    integration = GridIntegration.objects.select_for_update(no_key=True).get(pk=integration.pk)
    key = _new_key(integration)
    integration.revoked_at = None
    integration.save(update_fields=["key_prefix", "key_hash", "revoked_at", "updated_at"])
    audit_record_create(actor=actor, action="gridintegration.new_key", target=integration, source=source)
    return key


@transaction.atomic
def grid_integration_revoke(
    *, integration: GridIntegration, actor: Any = None, source: str = "service"
) -> bool:
    """Refuse the integration's key from now on. False (nothing written) when it was revoked already."""
    updated = GridIntegration.objects.filter(pk=integration.pk, revoked_at__isnull=True).update(
        revoked_at=clock.now()
    )
    if updated:
        audit_record_create(actor=actor, action="gridintegration.revoke", target=integration, source=source)
    return bool(updated)


def grid_integration_authenticate(*, key: str) -> GridIntegration | None:
    """The active integration this key belongs to, or None (malformed, unknown, wrong secret, revoked).
    Constant-time on the secret."""
    prefix, dot, secret = (key or "").strip().partition(".")
    if not dot or not prefix.startswith(PREFIX_START) or len(prefix) > 16 or not secret:
        return None
    integration = GridIntegration.objects.select_related("organisation").filter(key_prefix=prefix).first()
    if integration is None or not keys.verify_key(secret, integration.key_hash):
        return None
    if integration.revoked_at is not None:
        return None
    now = clock.now()
    if integration.last_used_at is None or now - integration.last_used_at >= LAST_USED_RESOLUTION:
        GridIntegration.objects.filter(pk=integration.pk).update(last_used_at=now)
        integration.last_used_at = now
    return integration


# --- what an integration does through the API ----------------------------------------------------------
def _sites_in_scope(
    *, integration: GridIntegration, site_ids: list[int], location_ids: list[int]
) -> list[Site]:
    """The sites named (by id, or by location: each of its sites), all of the integration's operator.
    NotFound for an id that names nothing (or a location without a site); PermissionDenied for a site or
    location of another operator."""
    organisation_id = integration.organisation_id
    found = {site.pk: site for site in Site.objects.filter(pk__in=site_ids)}
    missing = sorted(set(site_ids) - set(found))
    if missing:
        raise NotFound(
            _("No site with id {ids}.").format(ids=", ".join(map(str, missing))), code="site_not_found"
        )
    foreign = sorted(pk for pk, site in found.items() if site.organisation_id != organisation_id)
    if foreign:
        raise PermissionDenied(
            _("Site {ids} is not one of this integration's operator.").format(
                ids=", ".join(map(str, foreign))
            ),
            code="site_not_allowed",
        )
    locations = {loc.pk: loc for loc in Location.objects.filter(pk__in=location_ids)}
    missing = sorted(set(location_ids) - set(locations))
    if missing:
        raise NotFound(
            _("No location with id {ids}.").format(ids=", ".join(map(str, missing))),
            code="location_not_found",
        )
    foreign = sorted(pk for pk, loc in locations.items() if loc.organisation_id != organisation_id)
    if foreign:
        raise PermissionDenied(
            _("Location {ids} is not one of this integration's operator.").format(
                ids=", ".join(map(str, foreign))
            ),
            code="location_not_allowed",
        )
    by_location = list(Site.objects.filter(location_id__in=location_ids, organisation_id=organisation_id))
    without = sorted(set(location_ids) - {site.location_id for site in by_location})
    if without:
        raise NotFound(
            _("Location {ids} has no site.").format(ids=", ".join(map(str, without))), code="site_not_found"
        )
    sites = {**found, **{site.pk: site for site in by_location}}
    return [sites[pk] for pk in sorted(sites)]


@transaction.atomic
def grid_event_api_declare(
    *,
    integration: GridIntegration,
    site_ids: list[int],
    location_ids: list[int],
    reduce_percent: Decimal,
    starts_at: datetime,
    ends_at: datetime,
    reference: str = "",
) -> tuple[GridEvent, bool]:
    """Declare a grid event for an integration (POST /api/v1/grid-events). With a `reference`, a repeat
    of the integration's request returns the event it made (False) instead of a second one. Errors:
    ValidationFailed (400), NotFound (404), PermissionDenied (403); nothing is stored then."""
    # One request at a time per integration: a retried request cannot slip in next to its first try.
    GridIntegration.objects.select_for_update(no_key=True).filter(pk=integration.pk).first()
    if reference:
        existing = GridEvent.objects.filter(integration=integration, reference=reference[:100]).first()
        if existing is not None:
            return existing, False
    if not site_ids and not location_ids:
        raise ValidationFailed(_("Name at least one site or location."), code="no_sites")
    sites = _sites_in_scope(integration=integration, site_ids=site_ids, location_ids=location_ids)
    event = grid_event_declare(
        sites=sites,
        reduce_percent=reduce_percent,
        starts_at=starts_at,
        ends_at=ends_at,
        actor=integration,
        source="api",
        reference=reference,
        integration=integration,
    )
    return event, True


def grid_event_list_for(*, integration: GridIntegration) -> QuerySet[GridEvent]:
    """The events this integration declared, newest first."""
    return GridEvent.objects.filter(integration=integration).prefetch_related("sites")


def grid_event_get_for(*, integration: GridIntegration, pk: Any) -> GridEvent:
    """One event this integration declared; any other (or none) is not_found (404)."""
    try:
        pk = int(pk)
    except (TypeError, ValueError):
        pk = None
    event = grid_event_list_for(integration=integration).filter(pk=pk).first() if pk is not None else None
    if event is None:
        raise NotFound(_("No grid event with id {id}.").format(id=pk), code="grid_event_not_found")
    return event
