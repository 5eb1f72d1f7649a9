"""`manage.py idtoken_add UID`: register an id token (RFID card or app token) from a script, idempotently."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from django.core.exceptions import ValidationError
from django.core.management.base import BaseCommand, CommandError, CommandParser

from apps.accounts.choices import RFID_TYPES, IdTokenStatus, IdTokenType
from apps.accounts.idtokens import normalise_uid
from apps.accounts.models import IdToken, Organisation
from apps.accounts.services import idtoken_upsert
from cpo.clock import parse_iso8601
from cpo.exceptions import ApplicationError

# The uid errors of an RFID card: the uid may be no card at all (an app token typed without --type).
_RFID_UID_ERRORS = frozenset({"uid_not_hex", "uid_length"})

# The fields idtoken_upsert may change on an existing token, as (attribute, name printed).
_REPORTED_FIELDS = (
    ("status", "status"),
    ("expires_at", "expires"),
    ("owner_id", "owner"),
    ("group_id", "group-id"),
)


class Command(BaseCommand):
    help = (
        "Create an id token, or update the fields given on an existing one. The uid is normalised "
        "(upper case; RFID uids as hex without separators). Prints 'created', 'updated: <what>' or "
        "'unchanged'; exits non-zero with a message on bad input."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("uid", help="Token uid, e.g. an RFID card's 04:A2:B3:C4 or an app token id.")
        parser.add_argument(
            "--status", choices=IdTokenStatus.values, help="Default for a new token: Accepted."
        )
        parser.add_argument(
            "--expires",
            metavar="ISO8601",
            help="Expiry with a time zone, e.g. 2027-01-31T23:59:59Z or 2027-01-31T23:59:59+01:00.",
        )
        parser.add_argument("--owner", metavar="EMAIL", help="E-mail address of the user who owns the token.")
        parser.add_argument(
            "--type",
            choices=IdTokenType.values,
            default=IdTokenType.ISO14443,
            help="Token type (default: ISO14443, an RFID card; Central for an app or other non-RFID token).",
        )
        parser.add_argument(
            "--group-id", metavar="G", help="Group answered to chargers as parentIdTag / groupIdToken."
        )
        parser.add_argument("--organisation", metavar="SLUG", help="Issuing operator of a new token.")

    def handle(
        self,
        *args: Any,
        uid: str,
        status: str | None,
        expires: str | None,
        owner: str | None,
        type: str,
        group_id: str | None,
        organisation: str | None,
        **options: Any,
    ) -> None:
        expires_at = _parse_expires(expires) if expires is not None else None
        issuer = None
        if organisation is not None:
            issuer = Organisation.objects.filter(slug=organisation).first()
            if issuer is None:
                raise CommandError(f"No organisation with slug {organisation!r}.")
        try:
            before = IdToken.objects.filter(uid=normalise_uid(uid, type)).first()
        except ValidationError as exc:
            message = exc.messages[0]
            if type in RFID_TYPES and exc.code in _RFID_UID_ERRORS:
                message += (
                    f" The default --type is {IdTokenType.ISO14443} (an RFID card); for a token that is not "
                    f"an RFID card, give its type: idtoken_add {uid} --type {IdTokenType.CENTRAL}"
                )
            raise CommandError(message) from exc
        try:
            token, created = idtoken_upsert(
                uid=uid,
                type=type,
                status=status,
                expires_at=expires_at,
                owner_email=owner,
                group_id=group_id,
                organisation=issuer,
                source="command",
            )
        except ApplicationError as exc:
            raise CommandError(exc.detail) from exc
        if created or before is None:
            self.stdout.write("created")
            return
        changed = [name for attr, name in _REPORTED_FIELDS if getattr(before, attr) != getattr(token, attr)]
        self.stdout.write("updated: " + ", ".join(changed) if changed else "unchanged")


def _parse_expires(value: str) -> datetime:
    try:
        return parse_iso8601(value)
    except ValueError as exc:
        raise CommandError(
            f"--expires must be an ISO 8601 time with a time zone (e.g. 2027-01-31T23:59:59Z), got {value!r}."
        ) from exc
