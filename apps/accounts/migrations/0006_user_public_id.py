"""Every user gets a random pseudonym (`public_id`), the name the audit trail gives drivers.

Added in three steps because a callable default in AddField is evaluated once for the whole table: add it
nullable, give each existing user its own uuid4, then make it required and unique."""

import uuid

from django.db import migrations, models


def fill_public_ids(apps, schema_editor):
    User = apps.get_model("accounts", "User")
    for user in User.objects.filter(public_id__isnull=True).only("pk").iterator():
        User.objects.filter(pk=user.pk).update(public_id=uuid.uuid4())


class Migration(migrations.Migration):
    dependencies = [("accounts", "0005_idtoken_released_at")]

    operations = [
        migrations.AddField(
            model_name="user",
            name="public_id",
            field=models.UUIDField(editable=False, null=True, verbose_name="pseudonym"),
        ),
        migrations.RunPython(fill_public_ids, migrations.RunPython.noop, elidable=True),
        migrations.AlterField(
            model_name="user",
            name="public_id",
            field=models.UUIDField(
                default=uuid.uuid4,
                editable=False,
                help_text="Random; the audit trail names drivers by it (driver:<pseudonym>), never by e-mail.",
                unique=True,
                verbose_name="pseudonym",
            ),
        ),
    ]
