"""Where the outside world reaches the product: the one base URL for links in e-mails (verification,
password reset) and for URLs handed to chargers (diagnostics uploads, firmware downloads)."""

from __future__ import annotations

from typing import Any

from django.conf import settings


def public_base_url(request: Any = None) -> str:
    """The scheme and host we are reached at, without a trailing slash (``https://cpo.example.com``).

    ``CPO_PUBLIC_BASE_URL`` when set (behind a proxy or for chargers on another network it is the only
    reliable answer). Otherwise the scheme and host of `request` (a Django or DRF request), as Django
    derives them: the Host header checked against ALLOWED_HOSTS, and proxy headers only where the
    settings trust them (SECURE_PROXY_SSL_HEADER for the scheme, USE_X_FORWARDED_HOST for the host), so a
    client cannot make us hand out links to its own host by sending X-Forwarded-* itself.
    ValueError when neither is known (e.g. from the shell or a task, without the setting)."""
    configured = str(getattr(settings, "CPO_PUBLIC_BASE_URL", "") or "").strip()
    if configured:
        return configured.rstrip("/")
    if request is None:
        raise ValueError("CPO_PUBLIC_BASE_URL is not set and there is no request to take the host from")
    return str(request.build_absolute_uri("/")).rstrip("/")
