from django.db import migrations


def grant(apps, schema_editor):
    from apps.accounts.roles import sync_roles

    sync_roles(apps, {"charging", "ocpp_gateway", "stations"})


class Migration(migrations.Migration):
    dependencies = [
        ("accounts", "0003_audit_append_only"),
        ("charging", "0003_ocpp201_transaction_events"),
        ("ocpp_gateway", "0003_files_and_local_lists"),
        ("stations", "0003_device_model_and_events"),
    ]

    operations = [migrations.RunPython(grant, migrations.RunPython.noop)]
