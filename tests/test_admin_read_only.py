"""Records the product writes itself (audit records, OCPP commands and messages, sessions, meter samples,
device variables, CDRs, ...) are read-only in the admin through one mixin, cpo.admin.ReadOnlyAdminMixin,
and every admin keeps exactly the permissions it had before the mixin was shared."""

from __future__ import annotations

import pytest
from django.contrib import admin
from django.test import RequestFactory

from apps.charging import admin as charging_admin
from apps.ocpp_gateway import admin as gateway_admin
from cpo.admin import ReadOnlyAdminMixin
from tests.factories import StaffUserFactory

pytestmark = pytest.mark.django_db

READ_ONLY = (False, False, False, True)
# (add, change, delete, view) of a superuser, without an object, for every admin and inline that refuses
# anything; measured before the mixin moved to the kernel. Anything not listed allows everything.
RESTRICTED = {
    "accounts.AuditRecord": READ_ONLY,
    # Created through the service (the key shown once); never edited or deleted, revoked by an action
    # (which needs "change").
    "accounts.ApiToken": (True, True, False, True),
    "billing.Dispute": READ_ONLY,
    # The console's alerts are raised by the product; staff acknowledge them (an action of its own).
    "console.Alert": READ_ONLY,
    "console.Alert AlertDeliveryInline": READ_ONLY,
    "console.StatusInterval": READ_ONLY,
    # Issuing a credit note is an action of its own (the "add" permission); an invoice never changes.
    "billing.Invoice": READ_ONLY,
    "billing.Invoice InvoiceLineInline": READ_ONLY,
    "billing.Payment": READ_ONLY,
    "billing.PaymentCharge": READ_ONLY,
    "billing.Refund": READ_ONLY,
    "smartcharging.ChargerConfigurationKey": READ_ONLY,
    "smartcharging.ChargingLimit": READ_ONLY,
    "smartcharging.EvChargingNeeds": READ_ONLY,
    "smartcharging.ExternalChargingLimit": READ_ONLY,
    "smartcharging.ReportedChargingProfile": READ_ONLY,
    # can_delete is off: no row is deleted through the site's page (the permission is the site's own).
    "smartcharging.Site ChargingLimitInline": (False, False, True, True),
    "charging.ChargingSession": READ_ONLY,
    "charging.DriverSession": READ_ONLY,
    "charging.DriverSession DriverSessionTransitionInline": (False, True, True, True),
    "charging.MeterSample": READ_ONLY,
    "charging.OrphanStop": READ_ONLY,
    "charging.TransactionEvent": READ_ONLY,
    "ocpp_gateway.DiagnosticsUpload": READ_ONLY,
    "ocpp_gateway.OcppCommand": READ_ONLY,
    "ocpp_gateway.OcppFailedMessage": READ_ONLY,
    "ocpp_gateway.OcppMessage": READ_ONLY,
    # The cancel action needs "change"; the add page reserves through the service (as the ReserveNow form
    # and the API do); a reservation is never deleted.
    "reservations.Reservation": (True, True, False, True),
    # Written by eMSPs (tokens) and by the product (sessions, commands, pushes); retrying a push is an action.
    "roaming.Push": READ_ONLY,
    "roaming.RemoteCommand": READ_ONLY,
    "roaming.RoamingSession": READ_ONLY,
    "roaming.RoamingToken": READ_ONLY,
    "stations.ChargerEvent": READ_ONLY,
    "stations.DeviceVariable": READ_ONLY,
    # The credit actions need "change"; a CDR itself is never editable.
    "tariffs.ChargeDetailRecord": (False, True, False, True),
}


def _permissions(model_admin, request, obj=None) -> tuple[bool, bool, bool, bool]:
    if isinstance(model_admin, admin.options.InlineModelAdmin):
        add = model_admin.has_add_permission(request, obj)
    else:
        add = model_admin.has_add_permission(request)
    return (
        add,
        model_admin.has_change_permission(request, obj),
        model_admin.has_delete_permission(request, obj),
        model_admin.has_view_permission(request, obj),
    )


@pytest.fixture
def superuser_request():
    request = RequestFactory().get("/")
    request.user = StaffUserFactory(is_superuser=True)
    return request


def test_permissions_are_unchanged(superuser_request):
    restricted = {}
    for model, model_admin in admin.site._registry.items():
        perms = _permissions(model_admin, superuser_request)
        if not all(perms):
            restricted[model._meta.label] = perms
        for inline_class in model_admin.inlines:
            perms = _permissions(inline_class(model, admin.site), superuser_request)
            if not all(perms):
                restricted[f"{model._meta.label} {inline_class.__name__}"] = perms
    assert restricted == RESTRICTED


def test_every_read_only_admin_uses_the_one_mixin():
    labels = {label for label, perms in RESTRICTED.items() if perms == READ_ONLY and " " not in label}
    admins = {model._meta.label: model_admin for model, model_admin in admin.site._registry.items()}
    assert labels and all(isinstance(admins[label], ReadOnlyAdminMixin) for label in labels)
    assert isinstance(admins["tariffs.ChargeDetailRecord"], ReadOnlyAdminMixin)
    # No copy elsewhere: the charging admin no longer takes it from the gateway (a later app).
    assert charging_admin.ReadOnlyAdminMixin is ReadOnlyAdminMixin
    assert gateway_admin.ReadOnlyAdminMixin is ReadOnlyAdminMixin


def test_a_charge_detail_record_itself_is_never_editable(superuser_request):
    cdr_admin = next(
        ma for m, ma in admin.site._registry.items() if m._meta.label == "tariffs.ChargeDetailRecord"
    )
    cdr = cdr_admin.model()
    assert _permissions(cdr_admin, superuser_request, cdr) == (False, False, False, True)
