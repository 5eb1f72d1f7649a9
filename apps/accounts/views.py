from typing import Any

from django.contrib.auth import views as auth_views
from django.http import HttpRequest, HttpResponse
from django.shortcuts import render

from apps.accounts.forms import AdminPasswordResetForm
from apps.accounts.services import user_verify_email
from cpo.exceptions import ValidationFailed


def verify_email(request: HttpRequest, uidb64: str, token: str) -> HttpResponse:
    try:
        user = user_verify_email(uidb64=uidb64, token=token)
    except ValidationFailed as exc:
        return render(request, "accounts/verify_email.html", {"error": exc.detail}, status=400)
    return render(request, "accounts/verify_email.html", {"verified_user": user})


class AdminPasswordResetView(auth_views.PasswordResetView):
    """The admin's "forgotten your password?" page, with requests throttled (apps.accounts.login_throttle)."""

    form_class = AdminPasswordResetForm

    def get_form_kwargs(self) -> dict[str, Any]:
        return {**super().get_form_kwargs(), "request": self.request}
