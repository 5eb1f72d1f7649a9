from django.db import migrations


def grant(apps, schema_editor):
    from apps.accounts.roles import sync_roles

    sync_roles(apps, {"smartcharging"})


class Migration(migrations.Migration):
    """The roles' permission to read the charging profiles smart charging sent (apps.accounts.roles)."""

    dependencies = [("smartcharging", "0002_grid_events")]

    operations = [migrations.RunPython(grant, migrations.RunPython.noop)]
