import datetime
from decimal import Decimal

from django.db import migrations

# Standard VAT rates as published by the countries (operators maintain the table in the admin).
VAT_RATES = [
    ("DE", "19.00", datetime.date(2007, 1, 1), None, "Umsatzsteuer, Regelsatz"),
    ("DE", "16.00", datetime.date(2020, 7, 1), datetime.date(2021, 1, 1), "Temporary reduction (COVID-19)"),
    ("AT", "20.00", datetime.date(2016, 1, 1), None, ""),
    ("BE", "21.00", datetime.date(1996, 1, 1), None, ""),
    ("CH", "8.10", datetime.date(2024, 1, 1), None, "MWST Normalsatz"),
    ("DK", "25.00", datetime.date(1992, 1, 1), None, ""),
    ("ES", "21.00", datetime.date(2012, 9, 1), None, ""),
    ("FR", "20.00", datetime.date(2014, 1, 1), None, "TVA taux normal"),
    ("GB", "20.00", datetime.date(2011, 1, 4), None, ""),
    ("IT", "22.00", datetime.date(2013, 10, 1), None, ""),
    ("LU", "17.00", datetime.date(2024, 1, 1), None, ""),
    ("NL", "21.00", datetime.date(2012, 10, 1), None, ""),
    ("NO", "25.00", datetime.date(2005, 1, 1), None, ""),
    ("PL", "23.00", datetime.date(2011, 1, 1), None, ""),
    ("SE", "25.00", datetime.date(1990, 7, 1), None, ""),
]


def seed_vat_rates(apps, schema_editor):
    VatRate = apps.get_model("tariffs", "VatRate")
    for country, rate, valid_from, valid_until, note in VAT_RATES:
        VatRate.objects.get_or_create(country=country, valid_from=valid_from,
                                      defaults={"rate": Decimal(rate), "valid_until": valid_until, "note": note})


def grant(apps, schema_editor):
    from apps.accounts.roles import sync_roles

    sync_roles(apps, {"tariffs"})


class Migration(migrations.Migration):
    dependencies = [
        ("tariffs", "0002_cdr_immutable"),
        ("accounts", "0004_roles_gateway_and_charging"),
    ]

    operations = [
        migrations.RunPython(seed_vat_rates, migrations.RunPython.noop),
        migrations.RunPython(grant, migrations.RunPython.noop),
    ]
