"""The one masking function for charger keys (pure): what it masks, and that it leaves the rest alone."""

import json

from apps.ocpp_gateway.masking import MASK, WITHHELD, mask_frame, mask_payload


def test_every_shape_that_carries_a_key_is_masked_and_the_input_is_left_alone():
    payload = {
        "key": "AuthorizationKey",
        "value": "s1",  # 1.6 ChangeConfiguration
        "configurationKey": [
            {"key": "authorizationkey", "value": "s2"},
            {"key": "HeartbeatInterval", "value": "300"},
        ],
        "setVariableData": [
            {
                "component": {"name": "SecurityCtrlr"},
                "variable": {"name": "BasicAuthPassword"},
                "attributeValue": "s3",
            }
        ],
        "reportData": [
            {
                "component": {"name": "SecurityCtrlr"},
                "variable": {"name": "BASICAUTHPASSWORD"},
                "variableAttribute": [{"type": "Actual", "value": "s4"}],
            }
        ],
    }
    original = json.loads(json.dumps(payload))
    masked = mask_payload(payload)
    assert payload == original
    text = json.dumps(masked)
    assert not any(s in text for s in ("s1", "s2", "s3", "s4"))
    assert masked["configurationKey"][1]["value"] == "300"
    assert masked["reportData"][0]["variableAttribute"][0] == {"type": "Actual", "value": MASK}


def test_frames_without_a_key_are_stored_byte_for_byte():
    raw = '[2, "m1", "Heartbeat", {}]'
    assert mask_frame(raw) is raw
    assert mask_frame('[2, "m1", "GetConfiguration", {"key": ["AuthorizationKey"]}]').endswith(
        '["AuthorizationKey"]}]'
    )
    assert mask_frame('[2, "m1", "ChangeConfiguration", {"key": "AuthorizationKey", "value": "x') == WITHHELD


def test_names_spelled_with_json_escapes_are_masked_too():
    r"""JSON lets a sender spell any character as \uXXXX: the frame still names a key and is masked."""
    escaped = r'[2, "m1", "ChangeConfiguration", {"key": "\u0041uthorizationKey", "value": "s1"}]'
    assert json.loads(mask_frame(escaped))[3] == {"key": "AuthorizationKey", "value": MASK}
    all_escaped = "".join(f"\\u{ord(c):04x}" for c in "BasicAuthPassword")
    raw = (
        '[2, "m2", "SetVariables", {"setVariableData": [{"component": {"name": "SecurityCtrlr"}, '
        f'"variable": {{"name": "{all_escaped}"}}, "attributeValue": "s2"}}]}}]'
    )
    assert "s2" not in mask_frame(raw)
    assert mask_frame(escaped[:-3]) == WITHHELD  # names a key, not valid JSON
    # A backslash in a frame that names no key changes nothing.
    plain = r'[2, "m3", "DataTransfer", {"vendorId": "V", "data": "a\u0042\"c\\u0041"}]'
    assert mask_frame(plain) is plain
