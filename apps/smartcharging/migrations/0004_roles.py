from django.db import migrations


def grant(apps, schema_editor):
    from apps.accounts.roles import sync_roles

    sync_roles(apps, {"smartcharging"})


class Migration(migrations.Migration):
    """The roles' permissions on smart charging (apps.accounts.roles): operator admins manage sites, grid
    events and grid integrations; technicians read sites and what chargers hold and report."""

    dependencies = [("smartcharging", "0003_grid_integrations_and_charger_reports")]

    operations = [migrations.RunPython(grant, migrations.RunPython.noop)]
