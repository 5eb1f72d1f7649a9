"""Generated: every admin action (ModelAdmin actions over admin.site._registry, Django's bulk delete
included) run by a staff member on one row produces exactly one audit record.

The actions are discovered from the admin itself; each needs a row to act on (TENANT_FACTORIES, or a case
below for a row in a particular state) and, for a two-step action, what its confirmation posts. A new
action without a way to make its row fails here until it is given one."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from django.contrib import admin
from django.contrib.auth.models import Group
from django.db import models
from django.test import RequestFactory
from django.urls import reverse

from apps.accounts.models import ApiToken, AuditRecord, User
from apps.accounts.services import api_token_create
from apps.charging.services import session_start, session_stop
from apps.ocpp_gateway.models import LocalAuthList, LocalAuthListMember
from apps.tariffs.models import VatRate
from apps.tariffs.services import cdr_issue
from tests.factories import (
    TENANT_FACTORIES,
    ChargePointFactory,
    ChargingSessionFactory,
    ConnectorFactory,
    EvseFactory,
    LocalAuthListFactory,
    LocationFactory,
    OrganisationFactory,
    PartyFactory,
    PushFactory,
    StaffUserFactory,
    VatRateFactory,
)

pytestmark = pytest.mark.django_db


def _local_list(org: Any) -> LocalAuthList:
    local_list = LocalAuthListFactory(organisation=org)
    LocalAuthListMember.objects.create(
        local_list=local_list, charge_point=ChargePointFactory(organisation=org)
    )
    return local_list


def _issued_cdr(org: Any) -> models.Model:
    """A charge detail record as the product issues it (free: no tariff in force), which can be repriced."""
    cp = ChargePointFactory(organisation=org, location=LocationFactory(organisation=org, country="DE"))
    ConnectorFactory(evse=EvseFactory(charge_point=cp, evse_id=1))
    started = datetime(2025, 5, 6, 8, 0, tzinfo=UTC)
    session = session_start(
        charge_point_id=cp.pk,
        evse_id=1,
        id_tag="",
        meter_start_wh=1000,
        started_at_charger=started,
        received_at=started,
        protocol="ocpp1.6",
    ).session
    stopped = started + timedelta(hours=1)
    session_stop(
        charge_point_id=cp.pk,
        transaction_ref=session.transaction_ref,
        meter_stop_wh=11000,
        stopped_at_charger=stopped,
        received_at=stopped,
        reason="Local",
    )
    return cdr_issue(session_id=session.pk, now=stopped + timedelta(minutes=1))


def _active_session(org: Any) -> models.Model:
    """A 1.6 session running at an (offline) charger: a remote stop is recorded, the charger offline."""
    cp = ChargePointFactory(organisation=org)
    ConnectorFactory(evse=EvseFactory(charge_point=cp, evse_id=1))
    started = datetime(2025, 5, 6, 8, 0, tzinfo=UTC)
    return session_start(
        charge_point_id=cp.pk,
        evse_id=1,
        id_tag="",
        meter_start_wh=1000,
        started_at_charger=started,
        received_at=started,
        protocol="ocpp1.6",
    ).session


def _api_token(org: Any) -> ApiToken:
    return api_token_create(user=StaffUserFactory(organisation=org))[0]


# Rows in the state an action acts on: (model label, action) -> make(organisation).
ROWS: dict[tuple[str, str], Callable[[Any], models.Model]] = {
    ("charging.ChargingSession", "mark_reviewed"): lambda org: ChargingSessionFactory(
        charge_point=ChargePointFactory(organisation=org), review_reason="unknown_token"
    ),
    ("charging.ChargingSession", "remote_stop"): _active_session,
    ("ocpp_gateway.LocalAuthList", "send_full"): _local_list,
    ("ocpp_gateway.LocalAuthList", "send_differential"): _local_list,
    ("ocpp_gateway.LocalAuthList", "request_version"): _local_list,
    ("stations.ChargePoint", "accept_pending"): lambda org: ChargePointFactory(
        organisation=org, registration_status="Pending", security_profile=0, auth_key_hash=""
    ),
    ("accounts.ApiToken", "revoke"): _api_token,
    ("roaming.Push", "retry"): lambda org: PushFactory(party=PartyFactory(organisation=org), status="FAILED"),
    ("tariffs.ChargeDetailRecord", "credit_and_reissue"): _issued_cdr,
}
# Rows by model, for any action on it not named above (e.g. Django's bulk delete).
MODEL_ROWS: dict[type[models.Model], Callable[[Any], models.Model]] = {
    **TENANT_FACTORIES,
    Group: lambda org: Group.objects.create(name=f"Group of {org.slug}"),
    ApiToken: _api_token,
    User: lambda org: StaffUserFactory(organisation=org),
    VatRate: lambda org: VatRateFactory(),
}
# What the confirmation step of a two-step action posts along with the action.
CONFIRM: dict[tuple[str, str], dict[str, Any]] = {
    ("billing.Invoice", "credit_note"): {"reason": "billed twice", "confirm": "yes"},
    ("stations.ChargePoint", "accept_pending"): {},
}


def _superuser() -> User:
    return User.objects.create_superuser(email="root@example.com", password="root-passphrase-2026")


def _actions() -> list[tuple[str, str]]:
    request = RequestFactory().get("/admin/")
    request.user = User(is_superuser=True, is_staff=True, is_active=True)
    found = []
    for model, model_admin in admin.site._registry.items():
        for action in model_admin.get_actions(request):
            found.append((model._meta.label, action))
    return sorted(found)


ACTIONS = _actions()


def _model(label: str) -> type[models.Model]:
    return next(model for model in admin.site._registry if model._meta.label == label)


def test_every_action_has_a_row_to_act_on():
    missing = [
        f"{label} {action}"
        for label, action in ACTIONS
        if (label, action) not in ROWS and _model(label) not in MODEL_ROWS
    ]
    assert missing == [], "add a way to make the row to ROWS or MODEL_ROWS: " + ", ".join(missing)


def _follow_up(client: Any, label: str, action: str, obj: models.Model, response: Any) -> Any:
    """The second step of an action that hands over to a page of its own."""
    if (label, action) == ("stations.ChargePoint", "accept_pending"):
        assert response.status_code == 302, response
        return client.post(response["Location"], {"epoch": "0"})
    return response


@pytest.mark.parametrize(("label", "action"), ACTIONS, ids=[f"{label}.{action}" for label, action in ACTIONS])
def test_each_admin_action_produces_exactly_one_audit_record(client, label, action):
    model = _model(label)
    org = OrganisationFactory()
    make = ROWS.get((label, action)) or MODEL_ROWS[model]
    obj = make(org)
    actor = _superuser()
    client.force_login(actor)
    before = set(AuditRecord.objects.values_list("pk", flat=True))
    url = reverse(f"admin:{model._meta.app_label}_{model._meta.model_name}_changelist")

    response = client.post(
        url,
        {
            "action": action,
            "_selected_action": [obj.pk],
            "index": "0",
            "post": "yes",
            **CONFIRM.get((label, action), {}),
        },
    )
    response = _follow_up(client, label, action, obj, response)

    assert response.status_code in (200, 302), response
    records = [(r.action, r.actor_id) for r in AuditRecord.objects.exclude(pk__in=before).order_by("pk")]
    assert len(records) == 1, f"{label} {action}: {records}"
    assert records[0][1] == actor.pk, records
