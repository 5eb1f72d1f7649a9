from django.db import migrations

# The audit trail is append-only in the database itself, not just in Python: UPDATE and DELETE raise.
# A deliberate maintenance job (e.g. anonymising after a legal request) may lift this for one
# transaction with:  SET LOCAL cpo.audit_maintenance = 'on';
FORWARD = """
CREATE OR REPLACE FUNCTION accounts_auditrecord_append_only() RETURNS trigger AS $$
BEGIN
    IF coalesce(current_setting('cpo.audit_maintenance', true), '') = 'on' THEN
        RETURN coalesce(NEW, OLD);
    END IF;
    RAISE EXCEPTION 'audit records are append-only (% refused)', TG_OP
        USING ERRCODE = 'insufficient_privilege';
END;
$$ LANGUAGE plpgsql;

CREATE TRIGGER accounts_auditrecord_append_only
    BEFORE UPDATE OR DELETE ON accounts_auditrecord
    FOR EACH ROW EXECUTE FUNCTION accounts_auditrecord_append_only();
"""

BACKWARD = """
DROP TRIGGER IF EXISTS accounts_auditrecord_append_only ON accounts_auditrecord;
DROP FUNCTION IF EXISTS accounts_auditrecord_append_only();
"""


class Migration(migrations.Migration):
    dependencies = [("accounts", "0002_roles")]

    operations = [migrations.RunSQL(FORWARD, BACKWARD)]
