"""`python -m tools.simulator.demo` (make run DEMO_CHARGERS=N): the demo data's charge points as simulated
chargers, with their keys, versions and EVSEs, charging with demo cards valid where they charge. The live
run (they boot and charge at a real `make run`) is tests/test_first_hour.py."""

from __future__ import annotations

import json
from collections import Counter
from datetime import UTC, datetime
from io import StringIO

from apps.stations.keys import verify_key
from tools.simulator import Charger, ChargingStation
from tools.simulator.demo import (
    DEMO_FIXTURE,
    build_chargers,
    demo_cards,
    demo_charge_points,
    demo_key,
    load_fixture,
    main,
)

NOW = datetime(2026, 12, 3, 12, 0, tzinfo=UTC)
RECORDS = load_fixture(DEMO_FIXTURE)
STORED = {r["fields"]["identity"]: r["fields"] for r in RECORDS if r["model"] == "stations.chargepoint"}


def test_the_demo_charge_points_that_can_connect_in_fixture_order():
    charge_points = demo_charge_points(RECORDS)

    identities = [cp.identity for cp in charge_points]
    assert identities[:3] == ["VOL-BER-001", "VOL-BER-002", "VOL-BER-003"]
    # Pending registrations and an Inoperative charger are left out
    assert {"VOL-HAM-002", "VOL-HAM-003", "VOL-LAB-001"}.isdisjoint(identities)
    assert len(identities) == len(STORED) - 3
    evses = Counter(r["fields"]["charge_point"] for r in RECORDS if r["model"] == "stations.evse")
    pks = {r["fields"]["identity"]: r["pk"] for r in RECORDS if r["model"] == "stations.chargepoint"}
    for cp in charge_points:
        assert cp.protocol == STORED[cp.identity]["ocpp_protocol"]
        assert cp.evses == evses[pks[cp.identity]]


def test_each_demo_charger_authenticates_with_the_key_the_demo_data_stores():
    for cp in demo_charge_points(RECORDS):
        assert verify_key(demo_key(cp.identity), STORED[cp.identity]["auth_key_hash"]), cp.identity


def test_only_cards_a_charger_accepts_now_are_used():
    uids = [card.uid for card in demo_cards(RECORDS, now=NOW)]

    # Blocked, Expired, Invalid and the app token are not RFID cards a car can present
    assert uids == [
        "04A2B3C4D5E680",
        "04F19A2B3C4D80",
        "0412AB34CD56EF",
        "0498BC76DE54F2",
        "04DE5A7B9C1E22",
        "E2B4C6D8",
    ]
    # a card past its expiry is not used either
    assert "0498BC76DE54F2" not in [
        card.uid for card in demo_cards(RECORDS, now=datetime(2027, 7, 1, tzinfo=UTC))
    ]


def test_chargers_charge_with_cards_valid_at_their_operator_spread_over_the_connectors():
    charge_points = demo_charge_points(RECORDS)
    cards = demo_cards(RECORDS, now=NOW)
    chargers = build_chargers("ws://127.0.0.1:8000/ocpp", charge_points, cards)

    valid_at = {card.uid: card.valid_at for card in cards}
    for cp, charger in zip(charge_points, chargers, strict=True):
        assert type(charger) is (Charger if cp.protocol == "ocpp1.6" else ChargingStation)
        assert charger.options.key == demo_key(cp.identity)
        assert charger.options.endpoint == f"ws://127.0.0.1:8000/ocpp/{cp.identity}"
        assert charger.options.sessions
        assert len(charger.options.id_tags) == cp.evses
        for uid in charger.options.id_tags:
            assert not valid_at[uid] or cp.organisation in valid_at[uid], (cp.identity, uid)
    slots = [tag for charger in chargers[:3] for tag in charger.options.id_tags]
    assert len(set(slots)) == min(len(slots), 5)  # five demo cards are valid at Voltaro Charging


def test_bad_arguments_and_a_missing_fixture_are_refused(tmp_path):
    err = StringIO()
    assert main(["--url", "http://127.0.0.1:8000/ocpp"], stdout=StringIO(), stderr=err) == 2
    assert "--url must be a ws:// or wss:// URL" in err.getvalue()

    err = StringIO()
    missing = tmp_path / "nope.json"
    assert (
        main(["--url", "ws://127.0.0.1:1/ocpp", "--fixture", str(missing)], stdout=StringIO(), stderr=err)
        == 1
    )
    assert err.getvalue().startswith(f"error: cannot read the demo data {missing}")

    err = StringIO()
    empty = tmp_path / "empty.json"
    empty.write_text(json.dumps([]))
    assert (
        main(["--url", "ws://127.0.0.1:1/ocpp", "--fixture", str(empty)], stdout=StringIO(), stderr=err) == 1
    )
    assert "holds no accepted, operative charge point" in err.getvalue()


def test_nothing_listening_ends_the_demo_with_a_message():
    err = StringIO()
    assert (
        main(["--url", "ws://127.0.0.1:1/ocpp", "--count", "2", "--wait", "0"], stdout=StringIO(), stderr=err)
        == 1
    )
    assert "nothing listens at ws://127.0.0.1:1/ocpp" in err.getvalue()
