"""Input and output shapes of the driver account endpoints."""

from __future__ import annotations

from typing import Any

from rest_framework import serializers

from apps.accounts.choices import IdTokenType
from apps.accounts.models import DriverProfile, IdToken, User
from apps.accounts.services import DRIVER_LANGUAGES


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
    uid = serializers.CharField(max_length=64, help_text="The card's uid (RFID: hex, separators allowed).")
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
