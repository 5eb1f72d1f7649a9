from django.db import migrations


def grant(apps, schema_editor):
    from apps.accounts.roles import sync_roles

    sync_roles(apps, {"reservations"})


class Migration(migrations.Migration):
    """The roles' permissions on reservations (apps.accounts.roles)."""

    dependencies = [("reservations", "0001_reservation")]

    operations = [migrations.RunPython(grant, migrations.RunPython.noop)]
