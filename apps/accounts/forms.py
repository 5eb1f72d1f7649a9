"""Forms of the admin's sign-in and password reset pages, with brute-force protection
(apps.accounts.login_throttle)."""

from __future__ import annotations

from typing import Any

from django.contrib.admin.forms import AdminAuthenticationForm
from django.contrib.auth.forms import PasswordResetForm
from django.core.exceptions import ValidationError

from apps.accounts import login_throttle


class AdminLoginForm(AdminAuthenticationForm):
    """The admin's sign-in form (admin.site.login_form): an attempt is counted before the password is
    checked and a throttled one is refused with a message; a failed one stays counted and is audited."""

    def clean(self) -> dict[str, Any]:
        username = self.cleaned_data.get("username")
        password = self.cleaned_data.get("password")
        if self.request is None or not username or not password:
            return super().clean()
        attempt = login_throttle.LoginAttempt(request=self.request, username=username)
        throttled = attempt.begin()  # counted as a failure from here on, until it succeeds
        if throttled is not None:
            raise ValidationError(throttled.message, code="throttled")
        try:
            cleaned = super().clean()
        except ValidationError:
            attempt.failed()
            raise
        except BaseException:
            attempt.abandon()
            raise
        attempt.succeeded()
        return cleaned


class AdminPasswordResetForm(PasswordResetForm):
    """The admin's password reset form: requests are counted per address typed and per client address;
    past the limits the form says so and no e-mail is sent."""

    def __init__(self, *args: Any, request: Any = None, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.request = request

    def clean(self) -> dict[str, Any]:
        cleaned = super().clean()
        email = cleaned.get("email")
        if email and self.request is not None:
            throttled = login_throttle.password_reset_check(request=self.request, email=email)
            if throttled is not None:
                self.add_error("email", ValidationError(throttled.message, code="throttled"))
        return cleaned
