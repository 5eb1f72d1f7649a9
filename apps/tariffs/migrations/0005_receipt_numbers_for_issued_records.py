from django.db import migrations

# Receipt numbers for the records issued before numbers existed: per operator and year (UTC) of issue,
# in the order they were issued, and the counters continue from there. Records are immutable in the
# database (migration 0002): this one maintenance step lifts that for its own transaction only.


def number_issued_records(apps, schema_editor):
    ChargeDetailRecord = apps.get_model("tariffs", "ChargeDetailRecord")
    ReceiptCounter = apps.get_model("tariffs", "ReceiptCounter")
    Organisation = apps.get_model("accounts", "Organisation")
    records = list(
        ChargeDetailRecord.objects.filter(number="").order_by("issued_at", "pk").values_list(
            "pk", "organisation_id", "issued_at"
        )
    )
    if not records:
        return
    prefixes = dict(Organisation.objects.values_list("pk", "invoice_prefix"))
    last: dict[tuple[int, int], int] = {
        (org, year): n for org, year, n in ReceiptCounter.objects.values_list("organisation_id", "year", "last_number")
    }
    schema_editor.execute("SET LOCAL cpo.cdr_maintenance = 'on'")
    for pk, organisation_id, issued_at in records:
        key = (organisation_id, issued_at.year)
        last[key] = last.get(key, 0) + 1
        number = f"{prefixes[organisation_id]}-{issued_at.year}-{last[key]:06d}"
        ChargeDetailRecord.objects.filter(pk=pk).update(number=number)
    schema_editor.execute("SET LOCAL cpo.cdr_maintenance = 'off'")
    for (organisation_id, year), n in last.items():
        ReceiptCounter.objects.update_or_create(
            organisation_id=organisation_id, year=year, defaults={"last_number": n}
        )


class Migration(migrations.Migration):
    dependencies = [("tariffs", "0004_receipt_numbers_and_pricing_note")]

    operations = [migrations.RunPython(number_issued_records, migrations.RunPython.noop)]
