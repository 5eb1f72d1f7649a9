"""Shapes of the operator API (/api/v1/operator/): what integrators send and get back. Output shapes read
model instances; what lives outside the row (a charger's live presence) is set on the instance by the
view (`online`, `connected_at`, `last_frame_at`)."""

from __future__ import annotations

from typing import Any

from rest_framework import serializers

# --- charge points -----------------------------------------------------------------------------------


class OperatorConnectorOutput(serializers.Serializer):
    connector_id = serializers.IntegerField()
    status = serializers.CharField(
        help_text="The last status the charger reported: Available, Preparing, Charging, SuspendedEVSE, "
        "SuspendedEV, Finishing, Reserved, Occupied, Unavailable, Faulted or Unknown."
    )
    error_code = serializers.CharField(help_text="The charger's error code with that status (empty: none).")
    status_info = serializers.CharField()
    status_at = serializers.DateTimeField(
        source="status_received_at", allow_null=True, help_text="When we received that status."
    )


class OperatorEvseOutput(serializers.Serializer):
    evse_id = serializers.IntegerField()
    availability = serializers.CharField(help_text="Operative or Inoperative.")
    connectors = OperatorConnectorOutput(many=True, source="connectors.all")


class OperatorChargePointOutput(serializers.Serializer):
    id = serializers.IntegerField()
    identity = serializers.CharField(help_text="The OCPP identity (its URL: /ocpp/<identity>).")
    organisation = serializers.CharField(source="organisation.slug")
    location = serializers.IntegerField(source="location_id", allow_null=True)
    vendor = serializers.CharField()
    model = serializers.CharField()
    serial_number = serializers.CharField()
    firmware_version = serializers.CharField()
    ocpp_protocol = serializers.CharField(help_text="ocpp1.6, ocpp2.0.1 or ocpp2.1 (its last connection).")
    registration_status = serializers.CharField(help_text="Pending, Accepted or Rejected.")
    availability = serializers.CharField(help_text="Operative or Inoperative.")
    status = serializers.CharField(help_text="The charger-level status it last reported.")
    online = serializers.BooleanField(help_text="Whether a connection holds the charger right now (live).")
    connected_at = serializers.DateTimeField(allow_null=True, help_text="Since when (null when offline).")
    last_frame_at = serializers.DateTimeField(
        allow_null=True,
        help_text="The charger's last frame (live; `last_seen_at` is the stored copy, up to a flush behind).",
    )
    last_seen_at = serializers.DateTimeField(allow_null=True)
    last_boot_at = serializers.DateTimeField(allow_null=True)
    evses = OperatorEvseOutput(many=True, source="evses.all")


class OperatorChargePointFilter(serializers.Serializer):
    location = serializers.IntegerField(required=False, min_value=1, help_text="Only this location's.")
    online = serializers.BooleanField(required=False, allow_null=True, default=None)


# --- commands ----------------------------------------------------------------------------------------


class OperatorCommandInput(serializers.Serializer):
    action = serializers.CharField(
        max_length=64,
        help_text="An OCPP action the charger's version takes from us, e.g. Reset, ChangeAvailability, "
        "RequestStartTransaction (2.0.1).",
    )
    payload = serializers.DictField(
        required=False,
        default=dict,
        help_text="The action's OCPP payload, checked against the version's JSON schema. Members the "
        "product fills itself may be left out (2.x remoteStartId/requestId: the command's id; "
        "GetDiagnostics/GetLog upload location: a single-use link of ours).",
    )
    timeout_s = serializers.FloatField(
        required=False, min_value=1, max_value=3600, help_text="How long the charger has to answer."
    )


class OperatorCommandOutput(serializers.Serializer):
    id = serializers.IntegerField()
    charge_point = serializers.CharField(source="charge_point.identity")
    action = serializers.CharField()
    payload = serializers.DictField(help_text="As sent (charger keys masked).")
    status = serializers.CharField(
        help_text="pending, sent (awaiting the answer); final: answered, call_error, timeout, "
        "charger_offline, charger_disconnected."
    )
    response = serializers.DictField(allow_null=True, help_text="The charger's answer (once answered).")
    error_code = serializers.CharField()
    error_description = serializers.CharField()
    source = serializers.CharField(help_text="Who sent it: api, admin, cli, service, ...")
    requested_by = serializers.EmailField(source="requested_by.email", allow_null=True, default=None)
    created_at = serializers.DateTimeField()
    sent_at = serializers.DateTimeField(allow_null=True)
    deadline = serializers.DateTimeField()
    completed_at = serializers.DateTimeField(allow_null=True)


class OperatorCommandFilter(serializers.Serializer):
    charge_point = serializers.CharField(required=False, max_length=64, help_text="A charger's identity.")
    status = serializers.CharField(required=False, max_length=20)


# --- transactions ------------------------------------------------------------------------------------


class OperatorTransactionOutput(serializers.Serializer):
    id = serializers.IntegerField()
    charge_point = serializers.CharField(source="charge_point.identity")
    evse_id = serializers.IntegerField()
    protocol = serializers.CharField()
    transaction_ref = serializers.CharField(help_text="The charger's transaction id.")
    status = serializers.CharField(help_text="ACTIVE or COMPLETED.")
    id_tag = serializers.CharField(help_text="The token's uid (empty when none was given).")
    auth_status = serializers.CharField()
    meter_start_wh = serializers.IntegerField()
    meter_stop_wh = serializers.IntegerField(allow_null=True)
    energy_wh = serializers.IntegerField(allow_null=True)
    started_at = serializers.DateTimeField()
    stopped_at = serializers.DateTimeField(allow_null=True)
    stop_reason = serializers.CharField()


class OperatorTransactionFilter(serializers.Serializer):
    charge_point = serializers.CharField(required=False, max_length=64, help_text="A charger's identity.")
    token = serializers.CharField(required=False, max_length=64, help_text="A token's uid (any case).")
    state = serializers.ChoiceField(
        required=False, choices=["ACTIVE", "COMPLETED"], help_text="ACTIVE or COMPLETED."
    )


# --- reservations and charging profiles --------------------------------------------------------------


class OperatorReservationOutput(serializers.Serializer):
    id = serializers.IntegerField()
    charge_point = serializers.CharField(source="charge_point.identity")
    evse_id = serializers.IntegerField(help_text="The EVSE (2.x) or connector (1.6) reserved.")
    id_tag = serializers.CharField()
    status = serializers.CharField(help_text="PENDING, RESERVED, CONSUMED, CANCELLED, EXPIRED or FAILED.")
    failure_code = serializers.CharField()
    expires_at = serializers.DateTimeField()
    created_by = serializers.CharField(help_text="api (a driver), admin, ...")
    created_at = serializers.DateTimeField()
    ended_at = serializers.DateTimeField(allow_null=True)
    charging_session = serializers.IntegerField(source="charging_session_id", allow_null=True)


class OperatorReservationFilter(serializers.Serializer):
    charge_point = serializers.CharField(required=False, max_length=64, help_text="A charger's identity.")
    status = serializers.CharField(required=False, max_length=16)


class OperatorChargingProfileOutput(serializers.Serializer):
    id = serializers.IntegerField()
    charge_point = serializers.CharField(source="charge_point.identity")
    site = serializers.IntegerField(source="site_id")
    evse_id = serializers.IntegerField()
    purpose = serializers.CharField(help_text="TxProfile, TxDefaultProfile or ChargePointMaxProfile.")
    profile_id = serializers.IntegerField()
    stack_level = serializers.IntegerField()
    limit_a = serializers.DecimalField(max_digits=7, decimal_places=1, help_text="Amperes per phase.")
    limit = serializers.DecimalField(max_digits=10, decimal_places=1, help_text="As sent, in `unit`.")
    unit = serializers.CharField(help_text="A or W.")
    transaction_ref = serializers.CharField()
    status = serializers.CharField(help_text="sent, accepted, rejected or failed.")
    command = serializers.IntegerField(source="command_id", allow_null=True)
    sent_at = serializers.DateTimeField()
    answered_at = serializers.DateTimeField(allow_null=True)
    valid_to = serializers.DateTimeField()


class OperatorChargingProfileFilter(serializers.Serializer):
    charge_point = serializers.CharField(required=False, max_length=64, help_text="A charger's identity.")
    status = serializers.CharField(required=False, max_length=8)


# --- id tokens ---------------------------------------------------------------------------------------


class OperatorTokenOutput(serializers.Serializer):
    id = serializers.IntegerField()
    uid = serializers.CharField()
    type = serializers.CharField()
    status = serializers.CharField(help_text="Accepted, Blocked, Expired or Invalid, as stored.")
    effective_status = serializers.CharField(
        help_text="What a charger is answered now (an Accepted token past its expiry: Expired)."
    )
    expires_at = serializers.DateTimeField(allow_null=True)
    organisation = serializers.CharField(source="organisation.slug", allow_null=True, default=None)
    group_id = serializers.CharField()
    label = serializers.SerializerMethodField(
        help_text="The operator's label of a card it issued (a driver's own card: empty, their words)."
    )
    created_at = serializers.DateTimeField()

    def get_label(self, obj: Any) -> str:
        return obj.label if obj.organisation_id is not None else ""


class OperatorTokenInput(serializers.Serializer):
    uid = serializers.CharField(max_length=64)
    type = serializers.CharField(
        max_length=16,
        default="ISO14443",
        help_text="ISO14443 (default), ISO15693, Central, eMAID, KeyCode, Local, MacAddress or "
        "NoAuthorization.",
    )
    organisation = serializers.SlugField(
        required=False, help_text="The issuing organisation (one of yours; default: your own)."
    )
    expires_at = serializers.DateTimeField(required=False, allow_null=True, default=None)
    group_id = serializers.CharField(required=False, max_length=36, default="", allow_blank=True)
    label = serializers.CharField(required=False, max_length=100, default="", allow_blank=True)


class OperatorTokenExpireInput(serializers.Serializer):
    expires_at = serializers.DateTimeField(
        required=False, help_text="When it stops being accepted (default: now; the past is allowed)."
    )


class OperatorTokenFilter(serializers.Serializer):
    uid = serializers.CharField(required=False, max_length=64)
    status = serializers.CharField(required=False, max_length=10)


# --- message log -------------------------------------------------------------------------------------


class OperatorMessageOutput(serializers.Serializer):
    id = serializers.IntegerField()
    charge_point = serializers.CharField(source="identity")
    direction = serializers.CharField(help_text="in (charger to us) or out (us to charger).")
    message_type = serializers.IntegerField(allow_null=True, help_text="2 CALL, 3 CALLRESULT, 4 CALLERROR.")
    action = serializers.CharField()
    unique_id = serializers.CharField()
    frame = serializers.CharField(help_text="The frame as sent (charger keys masked).")
    at = serializers.DateTimeField()


class OperatorMessageFilter(serializers.Serializer):
    charge_point = serializers.CharField(required=False, max_length=64, help_text="A charger's identity.")
    action = serializers.CharField(required=False, max_length=64)
    direction = serializers.ChoiceField(required=False, choices=["in", "out"])
    since = serializers.DateTimeField(required=False)
    until = serializers.DateTimeField(required=False)
