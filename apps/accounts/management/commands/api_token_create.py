"""`manage.py api_token_create <staff e-mail> [--name N]`: a new operator API token for a staff member.

The key is printed once, on its own line, and never stored (only its hash is): keep it somewhere safe.
It acts as that staff member, with their roles and organisation (revoke it in the admin). Exits
non-zero with a message when no active staff member has that address."""

from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.utils.translation import gettext as _

from apps.accounts.models import User
from apps.accounts.services import api_token_create
from cpo.exceptions import ApplicationError


class Command(BaseCommand):
    help = (
        "Create an operator API token (Authorization: Token <key>) for a staff member and print its key "
        "once. Exits non-zero when the address is not an active staff member's."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("email", help="The staff member's e-mail address; the token acts as them.")
        parser.add_argument("--name", default="", help="What the token is for (shown in the admin).")

    def handle(self, *args: Any, **options: Any) -> None:
        email = options["email"].strip()
        user = User.objects.filter(email__iexact=email).first()
        if user is None:
            raise CommandError(_("No user with the e-mail address {email}.").format(email=email))
        if not user.is_staff or not user.is_active:
            raise CommandError(
                _("{email} is not an active staff member: API tokens are only for staff.").format(email=email)
            )
        try:
            _token, key = api_token_create(user=user, name=options["name"], actor=None, source="cli")
        except ApplicationError as exc:
            raise CommandError(exc.detail) from exc
        self.stdout.write(key)
