"""Existing audit records stop naming drivers: the e-mail address in actor_repr / target_repr (and in the
few detail fields that copied it) becomes "driver:<public id>", as new records are written. Drivers erased
before this release get the same treatment, so their old address disappears from the trail too; and the
admin's change log stops naming them.

The audit trail is append-only in the database (trigger of 0003). Its function lets a deliberate
maintenance job through for one transaction (`cpo.audit_maintenance`, the escape hatch 0003 documents for
anonymising after a legal request): this migration sets it with set_config(..., is_local=true) inside its
own transaction, rewrites only the text copies (never who, when, what or the outcome) and clears it again.
"""

from django.db import migrations

ERASED_DOMAIN = "@invalid.invalid"  # accounts.services.driver_delete: deleted-<pk>@invalid.invalid


def _is_driver(user) -> bool:
    return not user.is_staff and not user.is_superuser and user.organisation_id is None


def _pseudonym(user) -> str:
    return f"driver:{user.public_id}"


def pseudonymise_drivers(apps, schema_editor):
    User = apps.get_model("accounts", "User")
    AuditRecord = apps.get_model("accounts", "AuditRecord")
    DriverProfile = apps.get_model("accounts", "DriverProfile")
    ContentType = apps.get_model("contenttypes", "ContentType")
    LogEntry = apps.get_model("admin", "LogEntry")

    users = {u.pk: u for u in User.objects.all()}
    if not AuditRecord.objects.exists() and not LogEntry.objects.exists():
        return
    by_email = {u.email.lower(): u for u in users.values()}
    user_type = ContentType.objects.filter(app_label="accounts", model="user").first()
    profile_type = ContentType.objects.filter(app_label="accounts", model="driverprofile").first()
    profile_owner = dict(DriverProfile.objects.values_list("pk", "user_id"))

    def target_user(type_id, object_id):
        if not str(object_id).isdigit():
            return None
        if user_type is not None and type_id == user_type.pk:
            return int(object_id)
        if profile_type is not None and type_id == profile_type.pk:
            return profile_owner.get(int(object_id))
        return None

    def name_for(value, *, unknown=None):
        """A copied address: a driver's becomes the pseudonym; a staff member's stays; one no account has
        any more becomes `unknown` (when given)."""
        user = by_email.get(str(value).strip().lower())
        if user is None:
            return value if unknown is None else unknown
        return _pseudonym(user) if _is_driver(user) else value

    with schema_editor.connection.cursor() as cursor:
        cursor.execute("SELECT set_config('cpo.audit_maintenance', 'on', true)")
    changed = []
    for record in AuditRecord.objects.all().order_by("pk").iterator(chunk_size=2000):
        new_actor, new_target, detail = record.actor_repr, record.target_repr, dict(record.detail or {})
        if record.actor_id is not None:
            actor = users.get(record.actor_id)
            if actor is None:  # the account was removed: its address must not outlive it here
                new_actor = f"user:{record.actor_id}"
            elif _is_driver(actor):
                new_actor = _pseudonym(actor)
        target_id = target_user(record.target_type_id, record.target_id)
        target = users.get(target_id) if target_id is not None else None
        if target is not None and _is_driver(target):
            new_target = _pseudonym(target)
            if "username" in detail:  # a sign-in typed with the driver's address
                detail["username"] = _pseudonym(target)
        elif target_id is not None and target is None:
            new_target = f"user:{target_id}"
        # idtoken.create/update's owner: an address no account has any more was an erased driver's
        if isinstance(detail.get("owner"), str) and "@" in detail["owner"]:
            detail["owner"] = name_for(detail["owner"], unknown="erased")
        # a sign-in typed with an address: what matched no account then is kept as typed (security)
        if isinstance(detail.get("username"), str):
            detail["username"] = name_for(detail["username"])
        if (new_actor, new_target, detail) != (record.actor_repr, record.target_repr, record.detail):
            record.actor_repr, record.target_repr, record.detail = new_actor, new_target[:300], detail
            changed.append(record)
        if len(changed) >= 2000:
            AuditRecord.objects.bulk_update(changed, ["actor_repr", "target_repr", "detail"])
            changed = []
    if changed:
        AuditRecord.objects.bulk_update(changed, ["actor_repr", "target_repr", "detail"])
    with schema_editor.connection.cursor() as cursor:
        cursor.execute("SELECT set_config('cpo.audit_maintenance', '', true)")

    # The admin's change log of accounts already erased (a live driver's entries name them while the
    # account exists; driver_delete rewrites them at erasure).
    for entry in LogEntry.objects.filter(content_type__in=[t for t in (user_type, profile_type) if t]):
        user = users.get(target_user(entry.content_type_id, entry.object_id))
        if user is not None and _is_driver(user) and user.email.endswith(ERASED_DOMAIN):
            LogEntry.objects.filter(pk=entry.pk).update(object_repr=_pseudonym(user))


class Migration(migrations.Migration):
    dependencies = [
        ("accounts", "0006_user_public_id"),
        ("admin", "0003_logentry_add_action_flag_choices"),
        ("contenttypes", "0002_remove_content_type_name"),
    ]

    operations = [migrations.RunPython(pseudonymise_drivers, migrations.RunPython.noop, elidable=True)]
