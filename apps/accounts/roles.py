"""Staff roles as permission groups. A permission applies only to rows the member may write
(tenancy.TenantQuerySet.writable_by): never to drivers, their personal cards or other organisations'.
`sync_roles` is called by migrations (with the historical app registry) so that every database has the
groups, and again by later apps' migrations as they add models."""

from __future__ import annotations

from typing import Any

from django.contrib.auth.management import create_permissions

from apps.accounts.choices import Role

CRUD = ("add", "change", "delete", "view")
VIEW = ("view",)


def _perms(app_label: str, model: str, actions: tuple[str, ...]) -> list[tuple[str, str]]:
    return [(app_label, f"{action}_{model}") for action in actions]


ROLE_PERMISSIONS: dict[str, list[tuple[str, str]]] = {
    Role.OPERATOR_ADMIN: [
        # The console: alerts (change: acknowledge), where they are sent, status history and uptime.
        *_perms("console", "alert", ("view", "change")),
        *_perms("console", "alertdelivery", VIEW),
        *_perms("console", "alertchannels", CRUD),
        *_perms("console", "statusinterval", VIEW),
        *_perms("ocpp_gateway", "ocppcommand", ("view", "add")),
        *_perms("ocpp_gateway", "ocppmessage", VIEW),
        *_perms("ocpp_gateway", "ocppfailedmessage", ("view", "change")),
        *_perms("ocpp_gateway", "firmwarefile", CRUD),
        *_perms("ocpp_gateway", "diagnosticsupload", VIEW),
        *_perms("ocpp_gateway", "localauthlist", CRUD),
        # Change: force-close a session whose stop never came, mark a flagged one reviewed (admin actions).
        *_perms("charging", "chargingsession", ("view", "change")),
        *_perms("charging", "metersample", VIEW),
        *_perms("charging", "transactionevent", VIEW),
        *_perms("charging", "orphanstop", ("view", "change")),
        *_perms("charging", "driversession", VIEW),
        *_perms("stations", "devicevariable", VIEW),
        *_perms("stations", "chargerevent", VIEW),
        *_perms("accounts", "organisation", ("view", "change")),
        # Its organisation's staff. Drivers (linked to it: tenancy) are read-only: their login, e-mail and
        # password are theirs (API) or a superuser's; never the superuser nor other organisations' staff.
        *_perms("accounts", "user", CRUD),
        *_perms("accounts", "customeraccount", CRUD),
        # Only the customer account, of profiles in its own customer accounts.
        *_perms("accounts", "driverprofile", ("view", "change")),
        # Its organisation's cards; drivers' personal cards are read-only.
        *_perms("accounts", "idtoken", CRUD),
        *_perms("accounts", "auditrecord", VIEW),
        # Staff API tokens of its organisation's staff (operator API): created and revoked, never edited.
        *_perms("accounts", "apitoken", ("view", "add", "change")),
        *_perms("stations", "location", CRUD),
        *_perms("stations", "chargepoint", CRUD),
        *_perms("stations", "evse", CRUD),
        *_perms("stations", "connector", CRUD),
        *_perms("tariffs", "tariff", CRUD),
        *_perms("tariffs", "tariffelement", CRUD),
        *_perms("tariffs", "tariffassignment", CRUD),
        *_perms("tariffs", "vatrate", VIEW),
        *_perms("tariffs", "chargedetailrecord", ("view", "change")),
        # Add: reserve for a card (the reservation's add page or the charger's ReserveNow command form, both
        # through the service); change: cancel a reservation (admin action).
        *_perms("reservations", "reservation", ("view", "add", "change")),
        *_perms("reservations", "reservationsettings", ("view", "add", "change")),
        # Smart charging: sites' budgets, grid events, the utility systems that may declare them (their
        # keys are issued and revoked here); what chargers hold and report is read-only.
        *_perms("smartcharging", "site", CRUD),
        *_perms("smartcharging", "gridevent", CRUD),
        *_perms("smartcharging", "gridintegration", CRUD),
        *_perms("smartcharging", "charginglimit", VIEW),
        *_perms("smartcharging", "chargerconfigurationkey", VIEW),
        *_perms("smartcharging", "externalcharginglimit", VIEW),
        *_perms("smartcharging", "reportedchargingprofile", VIEW),
        *_perms("smartcharging", "evchargingneeds", VIEW),
    ],
    Role.TECHNICIAN: [
        *_perms("console", "alert", ("view", "change")),
        *_perms("console", "alertdelivery", VIEW),
        *_perms("console", "statusinterval", VIEW),
        *_perms("ocpp_gateway", "ocppcommand", ("view", "add")),
        *_perms("ocpp_gateway", "ocppmessage", VIEW),
        *_perms("ocpp_gateway", "ocppfailedmessage", VIEW),
        *_perms("ocpp_gateway", "firmwarefile", ("view", "add")),
        *_perms("ocpp_gateway", "diagnosticsupload", VIEW),
        *_perms("ocpp_gateway", "localauthlist", VIEW),
        *_perms("charging", "chargingsession", VIEW),
        *_perms("charging", "metersample", VIEW),
        *_perms("charging", "transactionevent", VIEW),
        *_perms("stations", "devicevariable", VIEW),
        *_perms("stations", "chargerevent", VIEW),
        *_perms("accounts", "idtoken", VIEW),
        *_perms("stations", "location", VIEW),
        *_perms("stations", "chargepoint", ("view", "change")),
        *_perms("stations", "evse", ("view", "change", "add")),
        *_perms("stations", "connector", ("view", "change", "add")),
        *_perms("smartcharging", "site", VIEW),
        *_perms("smartcharging", "charginglimit", VIEW),
        *_perms("smartcharging", "chargerconfigurationkey", VIEW),
        *_perms("smartcharging", "externalcharginglimit", VIEW),
        *_perms("smartcharging", "reportedchargingprofile", VIEW),
        *_perms("smartcharging", "evchargingneeds", VIEW),
    ],
    Role.SUPPORT: [
        *_perms("console", "alert", ("view", "change")),
        *_perms("console", "statusinterval", VIEW),
        *_perms("ocpp_gateway", "ocppcommand", VIEW),
        *_perms("ocpp_gateway", "ocppmessage", VIEW),
        # Change: force-close a session whose stop never came (its card is refused meanwhile), mark reviewed.
        *_perms("charging", "chargingsession", ("view", "change")),
        *_perms("charging", "driversession", VIEW),
        *_perms("charging", "metersample", VIEW),
        *_perms("charging", "transactionevent", VIEW),
        *_perms("charging", "orphanstop", ("view", "change")),
        *_perms("accounts", "user", VIEW),
        *_perms("accounts", "driverprofile", VIEW),
        *_perms("accounts", "customeraccount", VIEW),
        # Block / unblock, expiry and label of its organisation's cards (IdTokenAdmin: who holds a card and
        # where it is valid need the add permission); drivers' personal cards are read-only.
        *_perms("accounts", "idtoken", ("view", "change")),
        *_perms("accounts", "auditrecord", VIEW),
        *_perms("stations", "location", VIEW),
        *_perms("stations", "chargepoint", VIEW),
        *_perms("stations", "evse", VIEW),
        *_perms("stations", "connector", VIEW),
        *_perms("tariffs", "tariff", VIEW),
        *_perms("tariffs", "tariffelement", VIEW),
        *_perms("tariffs", "tariffassignment", VIEW),
        *_perms("tariffs", "chargedetailrecord", VIEW),
        *_perms("reservations", "reservation", ("view", "add", "change")),
    ],
    Role.FINANCE: [
        *_perms("console", "alert", VIEW),
        *_perms("console", "statusinterval", VIEW),
        *_perms("charging", "chargingsession", VIEW),
        *_perms("charging", "metersample", VIEW),
        *_perms("charging", "orphanstop", VIEW),
        *_perms("accounts", "organisation", VIEW),
        *_perms("accounts", "customeraccount", CRUD),
        *_perms("accounts", "auditrecord", VIEW),
        *_perms("stations", "location", VIEW),
        *_perms("stations", "chargepoint", VIEW),
        *_perms("tariffs", "tariff", VIEW),
        *_perms("tariffs", "tariffelement", VIEW),
        *_perms("tariffs", "tariffassignment", VIEW),
        *_perms("tariffs", "vatrate", VIEW),
        *_perms("tariffs", "chargedetailrecord", ("view", "change")),
        *_perms("billing", "dispute", VIEW),
        # Change: mark a debt settled (admin page of a payment); add refund: refund a payment.
        *_perms("billing", "payment", ("view", "change")),
        *_perms("billing", "paymentcharge", VIEW),
        *_perms("billing", "refund", ("view", "add")),
        # Add: issue a credit note for an invoice (InvoiceAdmin's action); invoices themselves never change.
        *_perms("billing", "invoice", ("view", "add")),
        *_perms("billing", "invoiceline", VIEW),
    ],
}


def sync_roles(apps: Any, app_labels: set[str] | None = None) -> None:
    """Create the role groups and grant them their permissions (for `app_labels`, or all).

    Permissions are normally created after migrations run; they are created here first so a fresh
    database gets complete groups in one `migrate`."""
    for app_config in apps.get_app_configs():
        app_config.models_module = True
        create_permissions(app_config, verbosity=0)
        app_config.models_module = None
    Group = apps.get_model("auth", "Group")
    Permission = apps.get_model("auth", "Permission")
    for role, wanted in ROLE_PERMISSIONS.items():
        group, _ = Group.objects.get_or_create(name=str(role))
        for app_label, codename in wanted:
            if app_labels is not None and app_label not in app_labels:
                continue
            try:  # a model added by a later migration is granted by that later migration
                apps.get_model(app_label, codename.split("_", 1)[1])
            except LookupError:
                continue
            perm = Permission.objects.filter(content_type__app_label=app_label, codename=codename).first()
            if perm is None:
                raise LookupError(f"role {role}: permission {app_label}.{codename} does not exist")
            group.permissions.add(perm)
