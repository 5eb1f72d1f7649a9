import django.db.models.deletion
from django.conf import settings
from django.db import migrations, models

import cpo.clock


def grant(apps, schema_editor):
    from apps.accounts.roles import sync_roles

    sync_roles(apps, {"accounts"})


class Migration(migrations.Migration):
    """Staff API tokens for the operator API (hashed at rest), and the operator admin's permissions on
    them (apps.accounts.roles)."""

    dependencies = [
        ("accounts", "0008_organisation_time_zone"),
    ]

    operations = [
        migrations.CreateModel(
            name="ApiToken",
            fields=[
                ("id", models.BigAutoField(auto_created=True, primary_key=True, serialize=False, verbose_name="ID")),
                (
                    "name",
                    models.CharField(
                        help_text="What uses it, e.g. the ticketing system.", max_length=100, verbose_name="name"
                    ),
                ),
                (
                    "key_hash",
                    models.CharField(editable=False, max_length=64, unique=True, verbose_name="key (SHA-256)"),
                ),
                (
                    "prefix",
                    models.CharField(
                        editable=False,
                        help_text="To recognise a key you hold.",
                        max_length=12,
                        verbose_name="key starts with",
                    ),
                ),
                (
                    "created_at",
                    models.DateTimeField(default=cpo.clock.now, editable=False, verbose_name="created at"),
                ),
                (
                    "last_used_at",
                    models.DateTimeField(blank=True, editable=False, null=True, verbose_name="last used at"),
                ),
                (
                    "revoked_at",
                    models.DateTimeField(blank=True, editable=False, null=True, verbose_name="revoked at"),
                ),
                (
                    "created_by",
                    models.ForeignKey(
                        blank=True,
                        editable=False,
                        null=True,
                        on_delete=django.db.models.deletion.SET_NULL,
                        related_name="+",
                        to=settings.AUTH_USER_MODEL,
                        verbose_name="created by",
                    ),
                ),
                (
                    "user",
                    models.ForeignKey(
                        on_delete=django.db.models.deletion.CASCADE,
                        related_name="api_tokens",
                        to=settings.AUTH_USER_MODEL,
                        verbose_name="staff member",
                    ),
                ),
            ],
            options={
                "verbose_name": "API token",
                "verbose_name_plural": "API tokens",
                "ordering": ["-created_at", "-pk"],
            },
        ),
        migrations.RunPython(grant, migrations.RunPython.noop),
    ]
