"""OCPI transport details: the Base64 credentials token, DateTime, the envelope."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from apps.roaming import protocol


def test_the_authorization_header_is_the_token_in_base64_and_a_raw_token_is_still_understood():
    header = protocol.authorization_header("ebf3b399-779f-4497-9b9d-ac6ad3cc44d2")
    assert header == "Token ZWJmM2IzOTktNzc5Zi00NDk3LTliOWQtYWM2YWQzY2M0NGQy"
    assert protocol.tokens_from_authorization(header)[0] == "ebf3b399-779f-4497-9b9d-ac6ad3cc44d2"
    # OCPI 2.1.1 parties send the token as it is
    assert "plain-token" in protocol.tokens_from_authorization("Token plain-token")
    assert protocol.tokens_from_authorization("Bearer abc") == []
    assert protocol.tokens_from_authorization("") == []


def test_datetimes_are_utc_with_z_and_offsets_are_refused():
    at = datetime(2015, 6, 29, 20, 39, 9, 500000, tzinfo=UTC)
    assert protocol.format_datetime(at) == "2015-06-29T20:39:09Z"
    assert protocol.parse_datetime("2016-12-29T17:45:09.2Z", "x") == datetime(
        2016, 12, 29, 17, 45, 9, 200000, UTC
    )
    assert protocol.parse_datetime("2015-06-29T20:39:09", "x") == datetime(2015, 6, 29, 20, 39, 9, tzinfo=UTC)
    with pytest.raises(protocol.OcpiError, match="date_from: not an OCPI DateTime"):
        protocol.parse_datetime("2015-06-29T20:39:09+00:00", "date_from")


def test_the_envelope_has_data_status_code_message_and_timestamp():
    at = datetime(2020, 1, 1, tzinfo=UTC)
    assert protocol.envelope([1], at=at) == {
        "status_code": 1000,
        "data": [1],
        "timestamp": "2020-01-01T00:00:00Z",
    }
    assert protocol.envelope(status_code=2001, message="bad", at=at) == {
        "status_code": 2001,
        "status_message": "bad",
        "timestamp": "2020-01-01T00:00:00Z",
    }
