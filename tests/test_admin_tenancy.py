"""Generated: nothing outside a staff member's organisation can be read or written through the admin.

The world holds the rows that are no organisation's (the superuser, staff outside every organisation,
drivers, their profiles and personal cards, a blocked card) and another operator's rows, with drivers
linked to that other operator only (sessions at its chargers, a card restricted to its network, its
own card). A staff member of an unrelated organisation, for every role and for one holding every
permission of every registered model, then walks every registered admin model: the changelist (also
searched), every object URL of the admin (change, history, delete, password, custom pages) read and
posted with hostile data, every admin action on those rows, every autocomplete, the export and the
import. No page may show their personal data and every such row must be unchanged in the database.

A newly registered model, action, object URL or autocomplete field is walked automatically."""

from __future__ import annotations

import csv
import io
from typing import Any

import pytest
from django.contrib import admin
from django.contrib.auth.models import Permission
from django.contrib.contenttypes.models import ContentType
from django.core import serializers
from django.db import models
from django.test import RequestFactory
from django.urls import NoReverseMatch, reverse

from apps.accounts.choices import IdTokenStatus, Role
from apps.accounts.models import DriverProfile, IdToken, User
from tests.factories import (
    ChargePointFactory,
    ChargingSessionFactory,
    CustomerAccountFactory,
    DriverFactory,
    DriverSessionFactory,
    IdTokenFactory,
    OrganisationFactory,
    StaffUserFactory,
)

pytestmark = pytest.mark.django_db

EVERY_PERMISSION = "every permission"
ACTORS = [*Role.values, EVERY_PERMISSION]
REGISTERED = sorted(admin.site._registry, key=lambda model: model._meta.label)

# What an attacker would post to any form: take the row over, change the login, unblock the card.
HOSTILE = {
    "email": "attacker@example.com",
    "full_name": "Attacker",
    "phone": "+1 555 0100",
    "usable_password": "true",
    "password1": "attacker-passphrase-2026",
    "password2": "attacker-passphrase-2026",
    "is_active": "on",
    "is_staff": "on",
    "status": IdTokenStatus.ACCEPTED,
    "label": "taken",
    "group_id": "ATTACKER",
    "uid": "0A0B0CFF",
    "type": "ISO14443",
    "post": "yes",
    "_save": "Save",
}


class World:
    """The rows an unrelated operator's staff must neither read nor write."""

    def __init__(self) -> None:
        self.home = OrganisationFactory(slug="home-operator", name="Home operator")
        self.other = OrganisationFactory(slug="other-operator", name="Other operator")
        User.objects.create_superuser(email="root.secret@example.com", password="root-passphrase-2026")
        StaffUserFactory(email="deployment.secret@example.com", full_name="Deploy Secret", organisation=None)
        driver = DriverFactory(
            email="driver.secret@example.com",
            full_name="Driver Secret",
            driver_profile__phone="+49 30 777001",
        )
        lone = DriverFactory(email="lone.secret@example.com", full_name="Lone Secret")
        fleet = CustomerAccountFactory(organisation=self.other, name="Other fleet")
        DriverFactory(
            email="fleet.secret@example.com", full_name="Fleet Secret", driver_profile__customer_account=fleet
        )
        personal = IdTokenFactory(uid="0A0B0C01", owner=driver, label="secret label")
        blocked = IdTokenFactory(uid="0A0B0C02", owner=driver, status=IdTokenStatus.BLOCKED)
        IdTokenFactory(uid="0A0B0C03", owner=driver).valid_at.add(self.other)
        IdTokenFactory(uid="0A0B0C04", owner=driver, organisation=self.other, group_id="SECRETFLEET")
        IdTokenFactory(uid="0A0B0C05", owner=lone)
        charger = ChargePointFactory(organisation=self.other)
        ChargingSessionFactory(charge_point=charger, id_token=personal, id_tag=personal.uid)
        DriverSessionFactory(charge_point=charger, driver=driver, id_token=blocked)
        self.secrets = [
            "secret@example.com",
            "Secret",
            "777001",
            "secret label",
            "SECRETFLEET",
            *(f"0A0B0C0{n}" for n in range(1, 6)),
        ]

    def targets(self, model: type[models.Model]) -> models.QuerySet:
        """Rows of `model` that are not the home organisation's: no organisation, or another one."""
        manager = model._default_manager
        field = getattr(model, "tenant_field", None)
        if field is None:
            return manager.none()
        home = manager.filter(**{f"{field}__in": [self.home.pk]}).values("pk")
        return manager.exclude(pk__in=home)

    def snapshot(self) -> dict[str, Any]:
        return {
            model._meta.label: serializers.serialize("python", self.targets(model).order_by("pk"))
            for model in REGISTERED
        }


@pytest.fixture
def world(db):
    return World()


def make_actor(role: str, organisation: Any) -> Any:
    if role != EVERY_PERMISSION:
        return StaffUserFactory(
            organisation=organisation, role=role, email=f"actor.{role[:4].lower()}@{organisation.slug}.test"
        )
    actor = StaffUserFactory(organisation=organisation, email=f"actor.all@{organisation.slug}.test")
    content_types = [ContentType.objects.get_for_model(model) for model in REGISTERED]
    actor.user_permissions.add(*Permission.objects.filter(content_type__in=content_types))
    return User.objects.get(pk=actor.pk)


def leaks(response: Any, world: World) -> list[str]:
    body = b"".join(response.streaming_content) if response.streaming else response.content
    text = body.decode("utf-8", errors="replace")
    return [secret for secret in world.secrets if secret in text]


def actor_request(actor: Any) -> Any:
    request = RequestFactory().get("/admin/")
    request.user = actor
    return request


def object_urls(model_admin: Any, pk: Any) -> list[str]:
    """Every named URL of the admin that takes one object."""
    urls = []
    for pattern in model_admin.urls:
        converters = getattr(pattern.pattern, "converters", {})
        if not getattr(pattern, "name", None) or len(converters) != 1:
            continue
        try:
            urls.append(reverse(f"admin:{pattern.name}", kwargs={next(iter(converters)): pk}))
        except NoReverseMatch:
            continue
    return urls


def admin_url(model: type[models.Model], view: str) -> str | None:
    try:
        return reverse(f"admin:{model._meta.app_label}_{model._meta.model_name}_{view}")
    except NoReverseMatch:
        return None


@pytest.fixture(params=ACTORS)
def walk(request, world, client):
    actor = make_actor(request.param, world.home)
    client.force_login(actor)
    before = world.snapshot()
    problems: list[str] = []
    yield actor, client, problems
    assert world.snapshot() == before, f"{request.param}: rows outside the organisation changed"
    assert problems == [], f"{request.param}: " + "\n".join(problems)


def test_changelists_show_no_foreign_or_shared_rows(walk, world):
    _actor, client, problems = walk
    for model in REGISTERED:
        url = admin_url(model, "changelist")
        for params in ({}, {"q": "secret"}, {"q": "0A0B0C"}):
            response = client.get(url, params)
            if response.status_code == 200 and (found := leaks(response, world)):
                problems.append(f"{model._meta.label} changelist {params} shows {found}")


def test_object_pages_neither_show_nor_change_foreign_or_shared_rows(walk, world):
    actor, client, problems = walk
    hostile = {**HOSTILE, "organisation": world.home.pk, "owner": actor.pk}
    for model, model_admin in admin.site._registry.items():
        for obj in world.targets(model):
            for url in object_urls(model_admin, obj.pk):
                for method in (client.get, client.post):
                    response = method(url, hostile) if method is client.post else method(url)
                    if response.status_code not in (403, 404):
                        problems.append(
                            f"{model._meta.label} {url} {method.__name__}: {response.status_code}"
                        )
                    if found := leaks(response, world):
                        problems.append(f"{model._meta.label} {url} {method.__name__} shows {found}")


def test_admin_actions_do_not_touch_foreign_or_shared_rows(walk, world):
    actor, client, problems = walk
    for model, model_admin in admin.site._registry.items():
        targets = list(world.targets(model).values_list("pk", flat=True))
        if not targets:
            continue
        for action in model_admin.get_actions(actor_request(actor)):
            response = client.post(
                admin_url(model, "changelist"),
                {"action": action, "_selected_action": targets, "index": "0", "post": "yes"},
            )
            if found := leaks(response, world):
                problems.append(f"{model._meta.label} action {action} shows {found}")


def test_autocomplete_offers_no_foreign_or_shared_rows(walk, world):
    actor, client, problems = walk
    for model, model_admin in admin.site._registry.items():
        for field_name in model_admin.get_autocomplete_fields(actor_request(actor)):
            remote = model._meta.get_field(field_name).remote_field.model
            hidden = {str(pk) for pk in world.targets(remote).values_list("pk", flat=True)}
            for term in ("", "secret", "0A0B0C"):
                response = client.get(
                    reverse("admin:autocomplete"),
                    {
                        "app_label": model._meta.app_label,
                        "model_name": model._meta.model_name,
                        "field_name": field_name,
                        "term": term,
                    },
                )
                if response.status_code != 200:
                    continue
                offered = {result["id"] for result in response.json()["results"]}
                if offered & hidden or leaks(response, world):
                    problems.append(
                        f"{model._meta.label}.{field_name} autocomplete offers {offered & hidden}"
                    )


def _csv_format_index(model_admin: Any, formats: list[Any]) -> str:
    return str(next(i for i, fmt in enumerate(formats) if fmt.__name__ == "CSV"))


def test_export_shows_no_foreign_or_shared_rows(walk, world):
    actor, client, problems = walk
    for model, model_admin in admin.site._registry.items():
        url = admin_url(model, "export")
        if url is None:
            continue
        request = actor_request(actor)
        data = {"resource": "0", "format": _csv_format_index(model_admin, model_admin.get_export_formats())}
        for resource_class in model_admin.get_export_resource_classes(request):
            prefix = resource_class.__name__.lower()
            data.update({f"{prefix}_{name}": "on" for name in resource_class().get_export_order()})
        response = client.post(url, data)
        if found := leaks(response, world):
            problems.append(f"{model._meta.label} export shows {found}")


def test_import_changes_no_foreign_or_shared_rows(walk, world):
    """Each such row, exported by the system and imported back (one file per row) claimed for the staff
    member's organisation and with their own e-mail as owner where there is one, changes nothing."""
    actor, client, _problems = walk
    for model, model_admin in admin.site._registry.items():
        url = admin_url(model, "import")
        if url is None:
            continue
        request = actor_request(actor)
        csv_index = _csv_format_index(model_admin, model_admin.get_import_formats())
        for index, resource_class in enumerate(model_admin.get_import_resource_classes(request)):
            for obj in world.targets(model):
                row = dict(resource_class().export(queryset=model._default_manager.filter(pk=obj.pk)).dict[0])
                for column, value in (("organisation", world.home.slug), ("owner", actor.email)):
                    if column in row:
                        row[column] = value
                out = io.StringIO()
                writer = csv.DictWriter(out, fieldnames=list(row))
                writer.writeheader()
                writer.writerow(row)
                upload = io.BytesIO(out.getvalue().encode())
                upload.name = "rows.csv"
                preview = client.post(
                    url, {"resource": str(index), "format": csv_index, "import_file": upload}
                )
                form = (preview.context or {}).get("confirm_form") if preview.status_code == 200 else None
                if form is not None:
                    client.post(
                        admin_url(model, "process_import"),
                        {name: form.initial.get(name, "") for name in form.fields},
                    )


# --- the linked operator: sees its drivers, changes none of their credentials or personal cards ---------


def _linked(world: World, role: str) -> Any:
    return make_actor(role, world.other)


def test_staff_see_drivers_linked_to_their_organisation_and_nobody_else(world):
    staff = _linked(world, Role.OPERATOR_ADMIN)
    home_staff = make_actor(Role.OPERATOR_ADMIN, world.home)

    seen = set(User.objects.for_actor(staff).values_list("email", flat=True))
    assert seen == {
        staff.email,
        "driver.secret@example.com",  # sessions at its chargers, its card, a card restricted to its network
        "fleet.secret@example.com",  # in its customer account
    }
    assert set(User.objects.for_actor(home_staff).values_list("email", flat=True)) == {home_staff.email}
    assert set(IdToken.objects.for_actor(staff).values_list("uid", flat=True)) == {
        "0A0B0C01",  # used at its charger
        "0A0B0C02",  # used in a driver session at its charger
        "0A0B0C03",  # restricted to its network
        "0A0B0C04",  # its own
    }
    assert set(IdToken.objects.writable_by(staff).values_list("uid", flat=True)) == {"0A0B0C04"}
    assert set(DriverProfile.objects.for_actor(staff).values_list("user__email", flat=True)) == {
        "driver.secret@example.com",
        "fleet.secret@example.com",
    }


@pytest.mark.parametrize("role", ACTORS)
def test_linked_staff_cannot_change_a_drivers_login_or_personal_cards(world, client, role):
    staff = _linked(world, role)
    driver = User.objects.get(email="driver.secret@example.com")
    blocked = IdToken.objects.get(uid="0A0B0C02")
    client.force_login(staff)
    before = world.snapshot()

    hostile = {**HOSTILE, "organisation": world.other.pk, "owner": staff.pk}
    answers = [
        client.post(reverse("admin:accounts_user_change", args=[driver.pk]), hostile).status_code,
        client.post(reverse("admin:auth_user_password_change", args=[driver.pk]), hostile).status_code,
        client.get(reverse("admin:auth_user_password_change", args=[driver.pk])).status_code,
        client.post(reverse("admin:accounts_user_delete", args=[driver.pk]), {"post": "yes"}).status_code,
        client.post(reverse("admin:accounts_idtoken_change", args=[blocked.pk]), hostile).status_code,
        client.post(reverse("admin:accounts_idtoken_delete", args=[blocked.pk]), {"post": "yes"}).status_code,
    ]

    assert all(status == 403 for status in answers), answers
    assert world.snapshot() == before
    assert User.objects.get(pk=driver.pk).check_password("correct-horse-battery")


def test_a_linked_driver_is_shown_read_only(world, client):
    staff = _linked(world, Role.OPERATOR_ADMIN)
    driver = User.objects.get(email="driver.secret@example.com")
    client.force_login(staff)

    page = client.get(reverse("admin:accounts_user_change", args=[driver.pk]))

    assert page.status_code == 200
    assert 'name="_save"' not in page.content.decode()
    assert reverse("admin:auth_user_password_change", args=[driver.pk]) not in page.content.decode()


def test_support_blocks_its_own_card_but_cannot_move_it(world, client):
    staff = _linked(world, Role.SUPPORT)
    card = IdToken.objects.get(uid="0A0B0C04")
    driver = card.owner
    other_driver = User.objects.get(email="fleet.secret@example.com")
    client.force_login(staff)

    response = client.post(
        reverse("admin:accounts_idtoken_change", args=[card.pk]),
        {
            **HOSTILE,
            "status": IdTokenStatus.BLOCKED,
            "label": "lost",
            "expires_at_0": "",
            "expires_at_1": "",
            "owner": other_driver.pk,
            "uid": "0A0B0CEE",
            "group_id": "MOVED",
        },
    )

    assert response.status_code == 302
    card.refresh_from_db()
    assert (card.status, card.label) == (IdTokenStatus.BLOCKED, "lost")
    assert (card.uid, card.owner, card.group_id, card.organisation) == (
        "0A0B0C04",
        driver,
        "SECRETFLEET",
        world.other,
    )


def test_staff_cannot_make_their_card_a_shared_one(world, client):
    staff = _linked(world, Role.OPERATOR_ADMIN)
    card = IdToken.objects.get(uid="0A0B0C04")
    client.force_login(staff)

    response = client.post(
        reverse("admin:accounts_idtoken_change", args=[card.pk]),
        {
            "uid": card.uid,
            "type": "ISO14443",
            "status": "Accepted",
            "expires_at_0": "",
            "expires_at_1": "",
            "label": "",
            "group_id": "",
            "owner": card.owner_id,
            "organisation": "",
        },
    )

    assert response.status_code == 200
    assert response.context["adminform"].form.errors["organisation"] == [
        "Choose the organisation that issues this token."
    ]
    card.refresh_from_db()
    assert card.organisation == world.other


def test_staff_cannot_create_a_driver(world, client):
    staff = make_actor(Role.OPERATOR_ADMIN, world.home)
    client.force_login(staff)

    response = client.post(
        reverse("admin:accounts_user_add"),
        {
            "email": "new.driver@example.com",
            "usable_password": "true",
            "password1": "long-enough-passphrase",
            "password2": "long-enough-passphrase",
        },
    )

    assert response.status_code == 200
    assert response.context["adminform"].form.errors["organisation"] == [
        "Drivers register through the app; users you create belong to one of your organisations."
    ]
    assert not User.objects.filter(email="new.driver@example.com").exists()


@pytest.mark.parametrize("role", ACTORS)
def test_linked_staff_actions_leave_drivers_and_their_cards_alone(world, client, role):
    staff = _linked(world, role)
    client.force_login(staff)
    before = world.snapshot()

    for model in (User, IdToken, DriverProfile):
        visible = list(model._default_manager.for_actor(staff).values_list("pk", flat=True))
        for action in admin.site._registry[model].get_actions(actor_request(staff)):
            client.post(
                admin_url(model, "changelist"),
                {"action": action, "_selected_action": visible, "index": "0", "post": "yes"},
            )

    # Django refuses a bulk deletion that holds any row the user may not delete: nothing went.
    assert world.snapshot() == before
