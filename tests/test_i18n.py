"""German and French catalogues: complete, compiled, and used by models, services and the admin."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest
from django.conf import settings
from django.core.exceptions import ValidationError
from django.core.signals import setting_changed
from django.utils import translation

from apps.accounts.choices import IdTokenType
from apps.accounts.idtokens import normalise_uid
from apps.stations.choices import ConnectorStatus
from apps.stations.models import ChargePoint
from apps.stations.services import location_create
from cpo.exceptions import ValidationFailed

LANGUAGES = ("de", "fr")


def _catalogue(language: str) -> Path:
    return Path(settings.LOCALE_PATHS[0]) / language / "LC_MESSAGES" / "django.po"


@pytest.fixture(scope="session")
def compiled_catalogues() -> None:
    """Compile each .po whose .mo is missing or older (the .mo files are build artefacts, not committed),
    as `compilemessages` does, then make Django reload its catalogues."""
    compiled = False
    for language in LANGUAGES:
        po = _catalogue(language)
        mo = po.with_suffix(".mo")
        if not mo.exists() or mo.stat().st_mtime < po.stat().st_mtime:
            subprocess.run(["msgfmt", "--check-format", "-o", str(mo), str(po)], check=True)
            compiled = True
    if compiled:
        # Another test may already have loaded a catalogue without our messages; this is the signal
        # Django's own test tooling sends to drop its translation caches.
        setting_changed.send(
            sender=settings._wrapped.__class__,
            setting="LOCALE_PATHS",
            value=settings.LOCALE_PATHS,
            enter=False,
        )


@pytest.fixture(autouse=True)
def _reset_language():
    """LocaleMiddleware activates the request's language in this thread and leaves it active; tests
    that run afterwards must not inherit it."""
    yield
    translation.deactivate()


pytestmark = pytest.mark.usefixtures("compiled_catalogues")


@pytest.mark.parametrize("language", LANGUAGES)
@pytest.mark.parametrize("check", ["--untranslated", "--only-fuzzy"])
def test_catalogue_is_complete(language, check):
    result = subprocess.run(
        ["msgattrib", check, "--no-obsolete", str(_catalogue(language))],
        capture_output=True,
        text=True,
        check=True,
    )
    assert result.stdout == ""


@pytest.mark.parametrize(
    ("language", "singular", "plural"),
    [
        ("en", "charge point", "charge points"),
        ("de", "Ladestation", "Ladestationen"),
        ("fr", "borne de recharge", "bornes de recharge"),
    ],
)
def test_model_verbose_names(language, singular, plural):
    with translation.override(language):
        assert str(ChargePoint._meta.verbose_name) == singular
        assert str(ChargePoint._meta.verbose_name_plural) == plural


@pytest.mark.parametrize(("language", "label"), [("de", "Verfügbar"), ("fr", "Disponible")])
def test_choice_labels(language, label):
    with translation.override(language):
        assert str(ConnectorStatus.AVAILABLE.label) == label


@pytest.mark.parametrize(
    ("language", "message"),
    [
        ("de", "Ein Standort braucht Koordinaten (Breiten- und Längengrad)."),
        ("fr", "Un site doit avoir des coordonnées (latitude et longitude)."),
    ],
)
def test_service_validation_message(db, org_a, language, message):
    with translation.override(language), pytest.raises(ValidationFailed) as excinfo:
        location_create(
            organisation=org_a, name="Depot", address="Hauptstraße 1", city="Berlin", country="DE",
            latitude=None, longitude=None, time_zone="Europe/Berlin",
        )  # fmt: skip
    assert excinfo.value.detail == message
    assert excinfo.value.fields == {"point": [message]}


@pytest.mark.parametrize(
    ("language", "message"),
    [
        ("de", "Eine Token-UID darf höchstens 36 Zeichen haben."),
        ("fr", "Un UID de jeton peut comporter au plus 36 caractères."),
    ],
)
def test_message_with_placeholders(language, message):
    with translation.override(language), pytest.raises(ValidationError) as excinfo:
        normalise_uid("X" * 37, IdTokenType.CENTRAL)
    assert excinfo.value.messages == [message]


@pytest.mark.parametrize(
    ("accept_language", "content_language", "text"),
    [("de", "de", "Anmelden"), ("fr-FR,fr;q=0.9", "fr", "Connexion"), ("en-GB", "en", "Log in")],
)
def test_admin_login_page_follows_accept_language(db, client, accept_language, content_language, text):
    response = client.get("/admin/login/", HTTP_ACCEPT_LANGUAGE=accept_language)

    assert response.status_code == 200
    assert response["Content-Language"] == content_language
    assert f'<html lang="{content_language}"' in response.content.decode()
    assert text in response.content.decode()


def test_admin_shows_our_names_in_german(client, superuser):
    client.force_login(superuser)

    response = client.get("/admin/", HTTP_ACCEPT_LANGUAGE="de")

    content = response.content.decode()
    assert response.status_code == 200
    assert "Ladestationen" in content
    assert "Standorte" in content
    assert "Konten und Organisationen" in content
