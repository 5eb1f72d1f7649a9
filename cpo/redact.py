"""Redaction of secrets in what the product prints: URLs in error messages and logs."""

from __future__ import annotations

from urllib.parse import urlsplit


def mask_url(url: str) -> str:
    """The URL with any password replaced by ***, for error messages and logs."""
    try:
        parts = urlsplit(url)
    except ValueError:
        return "<unparsable>"
    if parts.password:
        netloc = parts.netloc.replace(f":{parts.password}@", ":***@")
        return parts._replace(netloc=netloc).geturl()
    return url
