from django.db import migrations


def grant(apps, schema_editor):
    from apps.accounts.roles import sync_roles

    sync_roles(apps, {"console"})


class Migration(migrations.Migration):
    """The roles' permissions on the console's alerts, alert channels and status history (apps.accounts.roles)."""

    dependencies = [("console", "0001_alerts_and_history")]

    operations = [migrations.RunPython(grant, migrations.RunPython.noop)]
