import django.core.validators
import django.db.models.deletion
from django.db import migrations, models


def grant(apps, schema_editor):
    from apps.accounts.roles import sync_roles

    sync_roles(apps, {"reservations"})


class Migration(migrations.Migration):
    """Each organisation's hold length (ReservationSettings), a reservation for any connector (evse_id 0),
    a reservation's fee still to price, and the roles' permissions."""

    dependencies = [
        ("accounts", "0008_organisation_time_zone"),
        ("reservations", "0002_roles"),
    ]

    operations = [
        migrations.AddField(
            model_name="reservation",
            name="fee_due",
            field=models.BooleanField(
                default=False,
                help_text="Ended without a charge (expired, or cancelled by its driver): not priced yet.",
                verbose_name="fee to price",
            ),
        ),
        migrations.AlterField(
            model_name="reservation",
            name="evse_id",
            field=models.PositiveIntegerField(
                help_text="0: any connector of the charger (where it supports that).",
                verbose_name="EVSE / connector",
            ),
        ),
        migrations.CreateModel(
            name="ReservationSettings",
            fields=[
                ("id", models.BigAutoField(auto_created=True, primary_key=True, serialize=False, verbose_name="ID")),
                (
                    "default_minutes",
                    models.PositiveSmallIntegerField(
                        default=15,
                        help_text="What a driver gets when they do not ask for a length.",
                        validators=[
                            django.core.validators.MinValueValidator(1),
                            django.core.validators.MaxValueValidator(30),
                        ],
                        verbose_name="default hold (minutes)",
                    ),
                ),
                (
                    "max_minutes",
                    models.PositiveSmallIntegerField(
                        default=30,
                        help_text="The most a driver may ask for (30 at most).",
                        validators=[
                            django.core.validators.MinValueValidator(1),
                            django.core.validators.MaxValueValidator(30),
                        ],
                        verbose_name="longest hold (minutes)",
                    ),
                ),
                (
                    "organisation",
                    models.OneToOneField(
                        on_delete=django.db.models.deletion.CASCADE,
                        related_name="reservation_settings",
                        to="accounts.organisation",
                        verbose_name="organisation",
                    ),
                ),
            ],
            options={
                "verbose_name": "reservation settings",
                "verbose_name_plural": "reservation settings",
                "constraints": [
                    models.CheckConstraint(
                        condition=models.Q(
                            ("default_minutes__gte", 1),
                            ("max_minutes__lte", 30),
                            ("default_minutes__lte", models.F("max_minutes")),
                        ),
                        name="reservationsettings_minutes_in_range",
                        violation_error_message="The default hold must be 1 minute to the longest hold (30 at most).",
                    )
                ],
            },
        ),
        migrations.RunPython(grant, migrations.RunPython.noop),
    ]
