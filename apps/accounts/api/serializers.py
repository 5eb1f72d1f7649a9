"""Input and output shapes of the driver account endpoints."""

from __future__ import annotations

import math
from typing import Any

from django.utils.translation import gettext as _
from django.utils.translation import ngettext
from rest_framework import serializers

from apps.accounts.choices import IdTokenType
from apps.accounts.models import DriverProfile, IdToken, User
from apps.accounts.services import DRIVER_LANGUAGES, token_not_linkable_detail
from apps.charging.choices import CardLinkStatus
from apps.charging.models import CardLinkRequest
from cpo import clock


class RegisterInput(serializers.Serializer):
    email = serializers.EmailField(max_length=254)
    password = serializers.CharField(max_length=128, write_only=True, style={"input_type": "password"})
    full_name = serializers.CharField(max_length=200, required=False, allow_blank=True, default="")
    preferred_language = serializers.ChoiceField(choices=DRIVER_LANGUAGES, required=False, default="en")


class MeOutput(serializers.Serializer):
    id = serializers.IntegerField()
    email = serializers.EmailField()
    email_verified = serializers.BooleanField()
    full_name = serializers.CharField()
    phone = serializers.CharField()
    preferred_language = serializers.CharField()
    date_joined = serializers.DateTimeField()

    @staticmethod
    def of(user: User) -> dict[str, Any]:
        profile = DriverProfile.objects.filter(user=user).first()
        return MeOutput(
            {
                "id": user.pk,
                "email": user.email,
                "email_verified": user.email_verified,
                "full_name": user.full_name,
                "phone": profile.phone if profile else "",
                "preferred_language": profile.preferred_language if profile else "en",
                "date_joined": user.date_joined,
            }
        ).data


class MeUpdateInput(serializers.Serializer):
    full_name = serializers.CharField(max_length=200, required=False, allow_blank=True)
    phone = serializers.RegexField(r"^\+?[0-9 ()\-]{0,31}$", max_length=32, required=False, allow_blank=True)
    preferred_language = serializers.ChoiceField(choices=DRIVER_LANGUAGES, required=False)


class EmailInput(serializers.Serializer):
    email = serializers.EmailField(max_length=254)


class PasswordResetConfirmInput(serializers.Serializer):
    uid = serializers.CharField(max_length=64)
    token = serializers.CharField(max_length=128)
    new_password = serializers.CharField(max_length=128, write_only=True, style={"input_type": "password"})


class EmailVerifyInput(serializers.Serializer):
    uid = serializers.CharField(max_length=64)
    token = serializers.CharField(max_length=128)


class LogoutInput(serializers.Serializer):
    refresh = serializers.CharField(max_length=2000)


class TokenInput(serializers.Serializer):
    charge_point = serializers.IntegerField(
        min_value=1,
        max_value=2**31 - 1,
        help_text="The charger (its id, as in `POST sessions`) where the driver will present the card.",
    )
    uid = serializers.CharField(
        max_length=64,
        required=False,
        allow_blank=True,
        default="",
        help_text="Optional: the card's uid (RFID: hex, separators allowed). Given, only that card "
        "confirms the link; without it, the first card of `type` presented at the charger does.",
    )
    type = serializers.ChoiceField(
        choices=[IdTokenType.ISO14443, IdTokenType.ISO15693, IdTokenType.EMAID, IdTokenType.KEY_CODE],
        default=IdTokenType.ISO14443,
        required=False,
    )
    label = serializers.CharField(max_length=100, required=False, allow_blank=True, default="")


class TokenOutput(serializers.ModelSerializer):
    status = serializers.SerializerMethodField()

    class Meta:
        model = IdToken
        fields = ["id", "uid", "type", "label", "status", "expires_at", "created_at"]

    def get_status(self, token: IdToken) -> str:
        return token.effective_status()


class CardLinkOutput(serializers.Serializer):
    """A request to link a card, confirmed by presenting the card at `charge_point` before `expires_at`."""

    id = serializers.IntegerField()
    status = serializers.ChoiceField(
        choices=CardLinkStatus.choices,
        help_text="pending until the card is presented at the charger; then linked (see `token`) or "
        "refused (`code` token_not_linkable); expired when the window passed; cancelled by the driver or "
        "by a newer request of the driver. Apps must tolerate values added later.",
    )
    charge_point = serializers.DictField(help_text="{id, identity}")
    type = serializers.CharField()
    uid = serializers.CharField(
        help_text="The uid typed in (normalised), the linked card's once linked, or ''."
    )
    label = serializers.CharField()
    expires_at = serializers.DateTimeField()
    message = serializers.CharField(help_text="What to tell the driver now, in their language.")
    token = TokenOutput(allow_null=True, help_text="The linked card, once `status` is linked.")
    code = serializers.CharField(allow_null=True, help_text="token_not_linkable when refused, else null.")

    @staticmethod
    def of(link: CardLinkRequest) -> dict[str, Any]:
        now = clock.now()
        status = link.current_status(now)
        cp = link.charge_point
        if status == CardLinkStatus.PENDING:
            minutes = max(1, math.ceil((link.expires_at - now).total_seconds() / 60))
            message = ngettext(
                "Hold the card to the reader of charger {cp} within {n} minute.",
                "Hold the card to the reader of charger {cp} within {n} minutes.",
                minutes,
            ).format(cp=cp.identity, n=minutes)
        elif status == CardLinkStatus.LINKED:
            message = _("The card is linked to your account.")
        elif status == CardLinkStatus.REFUSED:
            message = token_not_linkable_detail()
        elif status == CardLinkStatus.EXPIRED:
            message = _("No card was presented at charger {cp} in time. Ask again to link a card.").format(
                cp=cp.identity
            )
        else:
            message = _("This request to link a card was cancelled.")
        return CardLinkOutput(
            {
                "id": link.pk,
                "status": status,
                "charge_point": {"id": cp.pk, "identity": cp.identity},
                "type": link.type,
                "uid": link.uid,
                "label": link.label,
                "expires_at": link.expires_at,
                "message": message,
                "token": link.token if status == CardLinkStatus.LINKED else None,
                "code": "token_not_linkable" if status == CardLinkStatus.REFUSED else None,
            }
        ).data
