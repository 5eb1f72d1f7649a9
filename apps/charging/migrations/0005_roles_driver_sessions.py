from django.db import migrations


def grant(apps, schema_editor):
    from apps.accounts.roles import sync_roles

    sync_roles(apps, {"charging"})


class Migration(migrations.Migration):
    """Operator admins and support read driver sessions (what support looks at when a start failed)."""

    dependencies = [
        ("charging", "0004_driver_sessions"),
        ("accounts", "0005_idtoken_released_at"),
    ]

    operations = [migrations.RunPython(grant, migrations.RunPython.noop)]
