"""Linking a card to a driver's account with proof of possession ("tap to confirm").

A driver asks to link a card at a charger they pick (`card_link_request`): that makes a PENDING
CardLinkRequest, answered the same whatever uid was typed (or none). The card presented at that charger
within the window (its Authorize, or the start of a transaction: `idtoken_authorize` calls
`card_link_confirm`) is linked to the driver if it is linkable (accounts.services.driver_token_link)
or the request ends REFUSED with the neutral token_not_linkable; either way the tap itself is answered
as it would have been. Whether a uid exists is never told to someone who has not presented the card.
"""

from __future__ import annotations

from datetime import datetime, timedelta

from django.conf import settings
from django.core.exceptions import ValidationError
from django.db import IntegrityError, transaction
from django.db.models import F, Q
from django.utils.translation import gettext as _

from apps.accounts.choices import AuditOutcome, IdTokenType
from apps.accounts.idtokens import normalise_uid
from apps.accounts.models import IdToken, User
from apps.accounts.services import (
    DRIVER_TOKEN_TYPES,
    audit_record_create,
    driver_token_link,
    driver_token_type_check,
    driver_token_uid_check,
)
from apps.charging.choices import CardLinkStatus
from apps.charging.driver_services import _charge_point_for_driver
from apps.charging.models import CardLinkRequest
from cpo import clock
from cpo.exceptions import Conflict, NotFound, PermissionDenied, ValidationFailed

S = CardLinkStatus


def card_link_window() -> timedelta:
    """How long a card link request waits for the card at its charger (CPO_CARD_LINK_WINDOW_S)."""
    return timedelta(seconds=settings.CPO_CARD_LINK_WINDOW_S)


@transaction.atomic
def card_link_request(
    *, driver: User, charge_point_id: object, uid: str = "", type: str = IdTokenType.ISO14443, label: str = ""
) -> CardLinkRequest:
    """Ask to link the card the driver will present at charger `charge_point_id` within the window.
    The answer does not depend on `uid` (optional; when given only that card confirms the request) being
    known: nothing stored is looked at before the card is presented. A driver has one request waiting at
    a time (a new one cancels the older); a charger serves one driver at a time. Errors:
    token_type_not_allowed, token_uid_invalid (400), account_closed (403), charger_not_found (404),
    charger_busy_linking (409: another driver is linking a card there; try again within the window)."""
    driver_token_type_check(type=type)
    normalised = driver_token_uid_check(uid=uid, type=type) if uid.strip() else ""
    cp = _charge_point_for_driver(charge_point_id)
    # The driver's row lock orders the driver's own requests (one waiting per driver) and the account's
    # deletion, which takes it too.
    if not User.objects.select_for_update(no_key=True).filter(pk=driver.pk, is_active=True).exists():
        raise PermissionDenied(_("This account is closed."), code="account_closed")
    now = clock.now()
    CardLinkRequest.objects.filter(status=S.PENDING, expires_at__lte=now).filter(
        Q(charge_point=cp) | Q(driver=driver)
    ).update(status=S.EXPIRED, decided_at=F("expires_at"), updated_at=now)
    CardLinkRequest.objects.filter(driver=driver, status=S.PENDING).update(
        status=S.CANCELLED, decided_at=now, updated_at=now
    )
    link = CardLinkRequest(
        driver=driver,
        charge_point=cp,
        uid=normalised,
        type=type,
        label=label[:100],
        status=S.PENDING,
        expires_at=now + card_link_window(),
    )
    try:
        with transaction.atomic():
            link.save(force_insert=True)
    except IntegrityError as exc:
        # Another driver's request waits at this charger (the partial unique constraint decides races).
        raise Conflict(
            _(
                "Someone is linking a card at charger {cp} right now. Try again in a few minutes, or "
                "at another charger."
            ).format(cp=cp.identity),
            code="charger_busy_linking",
            fields={"charge_point": [_("Busy linking a card.")]},
        ) from exc
    audit_record_create(
        actor=driver,
        action="cardlink.request",
        target=link,
        source="api",
        detail={"charge_point": cp.identity, "uid_typed": bool(normalised), "type": type},
    )
    return link


def card_link_get(*, driver: User, link_id: int) -> CardLinkRequest:
    """One of the driver's link requests; another driver's, or none, is not_found (404)."""
    link = (
        CardLinkRequest.objects.select_related("charge_point", "token")
        .filter(pk=link_id, driver=driver)
        .first()
    )
    if link is None:
        raise NotFound(_("No such card link request."), code="not_found")
    return link


@transaction.atomic
def card_link_cancel(*, driver: User, link_id: int) -> CardLinkRequest:
    """Cancel the driver's waiting request; cancelling it again changes nothing. A request that has
    ended otherwise (linked, refused, expired) is card_link_not_pending (409) and stays as it is."""
    link = CardLinkRequest.objects.select_for_update(no_key=True).filter(pk=link_id, driver=driver).first()
    if link is None:
        raise NotFound(_("No such card link request."), code="not_found")
    current = link.current_status()
    if current == S.CANCELLED:
        return link
    if current != S.PENDING:
        raise Conflict(
            _("This card link request has already ended ({status}).").format(status=current),
            code="card_link_not_pending",
        )
    link.status, link.decided_at = S.CANCELLED, clock.now()
    link.save(update_fields=["status", "decided_at", "updated_at"])
    return link


def card_links_erase(*, user: User) -> None:
    """The driver's account is being erased (accounts.hooks.driver_erased): a waiting request is
    cancelled and no request keeps the label the driver typed (it may name them)."""
    now = clock.now()
    CardLinkRequest.objects.filter(driver=user, status=S.PENDING).update(
        status=S.CANCELLED, decided_at=now, updated_at=now
    )
    CardLinkRequest.objects.filter(driver=user).exclude(label="").update(label="", updated_at=now)


def card_link_refusals_since(*, driver: User, since: datetime) -> list[datetime]:
    """When the driver's link requests were refused (token_not_linkable) since `since`, oldest first."""
    refused = CardLinkRequest.objects.filter(driver=driver, status=S.REFUSED, decided_at__gte=since)
    return [
        at for at in refused.order_by("decided_at").values_list("decided_at", flat=True) if at is not None
    ]


def card_link_confirm(
    *, charge_point_id: int, uid: str, token_type: str | None, at: datetime
) -> CardLinkRequest | None:
    """A token presented at a charger (Authorize, or a transaction's start): if it answers the driver's
    waiting request there (the right type when the charger names one; the typed uid, if any), link it
    to that driver or refuse it neutrally (token_not_linkable), in one transaction. Returns the request
    it decided, or None. App tokens and charger-local ids never answer a request. The caller answers the
    tap itself as usual, so a linked card is then authorised as the driver's."""
    if token_type is not None and token_type not in DRIVER_TOKEN_TYPES:
        return None
    # Nearly every tap finds nothing waiting: one read of the partial unique index, no lock.
    waiting = CardLinkRequest.objects.filter(
        charge_point_id=charge_point_id, status=S.PENDING, expires_at__gt=at
    )
    if not waiting.exists():
        return None
    with transaction.atomic():
        link = waiting.select_for_update(no_key=True).select_related("driver").first()
        if link is None or (token_type is not None and token_type != link.type):
            return None
        try:
            normalised = normalise_uid(uid, link.type)
        except ValidationError:
            return None  # not a token of the type the driver asked to link
        if link.uid and normalised != link.uid:
            return None
        known_type = IdToken.objects.filter(uid=normalised).values_list("type", flat=True).first()
        if known_type is not None and known_type not in DRIVER_TOKEN_TYPES:
            return None  # the driver's own app token starting a charge, an operator's central token
        if not link.driver.is_active:
            link.status = S.CANCELLED
        else:
            try:
                with transaction.atomic():
                    token, _created = driver_token_link(
                        driver=link.driver, uid=normalised, type=link.type, label=link.label, source="ocpp"
                    )
            except (Conflict, ValidationFailed):
                link.status = S.REFUSED
                audit_record_create(
                    actor=link.driver,
                    action="cardlink.refuse",
                    outcome=AuditOutcome.DENIED,
                    target=link,
                    source="ocpp",
                    detail={"code": "token_not_linkable"},
                )
            else:
                link.status, link.token, link.uid = S.LINKED, token, normalised
        link.decided_at = at
        link.save(update_fields=["status", "token", "uid", "decided_at", "updated_at"])
        return link
