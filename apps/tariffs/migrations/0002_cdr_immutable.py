from django.db import migrations

# Charge detail records are immutable in the database itself, not just in Python: UPDATE and DELETE
# raise. Corrections are credit records. A deliberate maintenance job may lift this for one
# transaction with:  SET LOCAL cpo.cdr_maintenance = 'on';
FORWARD = """
CREATE OR REPLACE FUNCTION tariffs_cdr_immutable() RETURNS trigger AS $$
BEGIN
    IF coalesce(current_setting('cpo.cdr_maintenance', true), '') = 'on' THEN
        RETURN coalesce(NEW, OLD);
    END IF;
    RAISE EXCEPTION 'charge detail records are immutable (% refused): issue a credit', TG_OP
        USING ERRCODE = 'insufficient_privilege';
END;
$$ LANGUAGE plpgsql;

CREATE TRIGGER tariffs_cdr_immutable
    BEFORE UPDATE OR DELETE ON tariffs_chargedetailrecord
    FOR EACH ROW EXECUTE FUNCTION tariffs_cdr_immutable();
"""

BACKWARD = """
DROP TRIGGER IF EXISTS tariffs_cdr_immutable ON tariffs_chargedetailrecord;
DROP FUNCTION IF EXISTS tariffs_cdr_immutable();
"""


class Migration(migrations.Migration):
    dependencies = [("tariffs", "0001_initial")]

    operations = [migrations.RunSQL(FORWARD, BACKWARD)]
