"""Smart charging against simulated chargers over real WebSockets: a 3-phase site of 64 A per phase with
four 32 A charge points. This process runs the rebalance as the Celery task would; the profiles reach the
chargers through the server holding their connections, and their outcomes come back through the command
outcome path (the test waits for them, never for a fixed time)."""

from __future__ import annotations

import logging
from datetime import UTC, datetime, timedelta
from decimal import Decimal as D
from typing import Any

import pytest

from apps.charging.choices import SessionStatus
from apps.charging.models import ChargingSession
from apps.ocpp_gateway.models import OcppCommand
from apps.smartcharging import services
from apps.smartcharging.choices import ProfileStatus
from apps.smartcharging.models import ChargingLimit, GridEvent, Site
from apps.stations.models import ChargePoint
from cpo import clock
from tests.e2e.conftest import KEY, command, eventually, orm
from tests.factories import ChargePointFactory, IdTokenFactory, LocationFactory, OrganisationFactory
from tools.simulator import Fleet

pytestmark = [pytest.mark.asyncio, pytest.mark.slow]

ID_TAG = "04SMART00"  # one card per charger (a card charges at one charger at a time): 04SMART001...
V16 = [f"SMC-0000{n}" for n in range(1, 5)]
V201 = "SMC201-00001"


async def _async(value: Any) -> Any:
    return value


def _fleet(server, *, protocol: str, prefix: str, count: int) -> Fleet:
    return Fleet(
        url=server.url,
        count=count,
        prefix=prefix,
        protocol=protocol,
        key=KEY,
        connectors=1,
        meter_interval_s=1,
        max_power_w=22_080.0,  # 32 A on 3 phases at 230 V
        reconnect_base_s=0.2,
        reconnect_max_s=1.0,
        reboot_delay_s=0.2,
        unplug_delay_s=0.2,
    )


def _register(identities: list[str]) -> int:
    org = OrganisationFactory(slug="smart-e2e")
    location = LocationFactory(organisation=org)
    for n, identity in enumerate(identities, start=1):
        IdTokenFactory(uid=f"{ID_TAG}{n}")
        ChargePointFactory(identity=identity, organisation=org, location=location)
    return Site.objects.create(organisation=org, location=location, max_current_a=D("64"), phases=3).pk


def _active(identities: list[str]) -> list[ChargingSession]:
    return list(
        ChargingSession.objects.filter(
            charge_point__identity__in=identities, status=SessionStatus.ACTIVE, auth_status="Accepted"
        )
    )


def _limits() -> list[ChargingLimit]:
    """The running sessions' profiles in force (TxProfile), by charger."""
    return list(
        ChargingLimit.objects.filter(purpose="TxProfile")
        .select_related("charge_point")
        .order_by("charge_point__identity")
    )


def _static() -> set[tuple[str, str, str, D, str]]:
    """The static profiles (fail-safe default, cap) at EVSE 0 of each charger."""
    return {
        (r.charge_point.identity, r.purpose, r.status, r.limit_a, r.unit)
        for r in ChargingLimit.objects.exclude(purpose="TxProfile").select_related("charge_point")
    }


async def _rebalanced(site_id: int, count: int, limit_a: D | None = None) -> list[ChargingLimit]:
    """Run the rebalance (as the Celery worker would) and wait until the chargers accepted every profile
    (of `limit_a` when given)."""
    await orm(services.site_rebalance)(site_id=site_id)

    async def all_accepted():
        rows = await orm(_limits)()
        statuses = {row.status for row in rows}
        done = len(rows) == count and statuses == {ProfileStatus.ACCEPTED}
        return rows if done and (limit_a is None or {r.limit_a for r in rows} == {limit_a}) else None

    try:
        return await eventually(all_accepted, what=f"{count} profiles accepted")
    except AssertionError as exc:
        raise AssertionError(f"{exc}: {await orm(_commands)()}") from None


def _commands() -> list[tuple[Any, ...]]:
    return [
        (
            r.charge_point.identity,
            r.status,
            r.limit,
            r.unit,
            command.status if command else None,
            command.response if command else None,
            command.error_description if command else None,
        )
        for r in _limits()
        for command in [OcppCommand.objects.filter(pk=r.command_id).first()]
    ]


def _charger_limit_a(charger) -> float:
    """What the simulated charger itself enforces now on its connector (amperes per phase)."""
    connector = charger.connectors[1]
    tx = connector.transaction
    limit = charger.profiles.limit_a(1, datetime.now(UTC), transaction_start=tx.started_at if tx else None)
    assert limit is not None, f"{charger.options.identity} has no profile in force"
    return limit


async def _start(identity: str, protocol: str, tag: str) -> None:
    if protocol == "ocpp1.6":
        answer = await command(identity, "RemoteStartTransaction", {"idTag": tag, "connectorId": 1})
    else:
        answer = await command(
            identity,
            "RequestStartTransaction",
            {"idToken": {"idToken": tag, "type": "ISO14443"}, "remoteStartId": 5, "evseId": 1},
        )
    assert (answer["status"], answer["response"]["status"]) == ("answered", "Accepted")


@pytest.mark.parametrize("watts_only", [False, True], ids=["amperes", "watts-only"])
async def test_a_64_a_site_shares_its_budget_among_four_32_a_chargers(server, caplog, watts_only):
    caplog.set_level(logging.WARNING, logger="ocpp")
    identities = [*V16[:3], V201]
    site_id = await orm(_register)(identities)
    fleet16 = _fleet(server, protocol="ocpp1.6", prefix="SMC-", count=3)
    fleet201 = _fleet(server, protocol="ocpp2.0.1", prefix="SMC201-", count=1)
    fleet16.start()
    fleet201.start()
    try:
        await eventually(
            lambda: _async(fleet16.connected == 3 and fleet201.connected == 1), what="four chargers booted"
        )
        chargers = {identity: (fleet16 if identity in V16 else fleet201)[identity] for identity in identities}
        if watts_only:
            # The first 1.6 charger takes only watts; the product learns it from its GetConfiguration answer.
            chargers[V16[0]].config._values["ChargingScheduleAllowedChargingRateUnit"] = "Power"
            answer = await command(
                V16[0], "GetConfiguration", {"key": ["ChargingScheduleAllowedChargingRateUnit"]}
            )
            assert answer["status"] == "answered"
            units = await orm(services.charge_point_rate_units)(
                charge_point_id=(await orm(lambda: _cp_id(V16[0]))())
            )
            assert units == {"W"}
        for n, identity in enumerate(identities, start=1):
            await _start(identity, "ocpp1.6" if identity in V16 else "ocpp2.0.1", f"{ID_TAG}{n}")
        await eventually(
            lambda: orm(lambda: len(_active(identities)) == 4)(),
            what=f"four ACTIVE sessions ({await orm(_sessions)()})",
            timeout=30,
        )

        # Four sessions: 16 A each, in force at the chargers.
        rows = await _rebalanced(site_id, 4)
        assert [(r.charge_point.identity, r.limit_a) for r in rows] == [
            (i, D("16.0")) for i in sorted(identities)
        ]
        assert sum(r.limit_a for r in rows) <= 64 and all(r.limit_a >= 6 for r in rows)
        # Every charger took the fail-safe default for new transactions and the static cap too.
        expected_static = {
            (identity, purpose, ProfileStatus.ACCEPTED, limit_a, "A")
            for identity in identities
            for purpose, limit_a in (("TxDefaultProfile", D("6.0")), ("ChargePointMaxProfile", D("64.0")))
        }
        if watts_only:
            expected_static = {(i, p, s, a, "W" if i == V16[0] else u) for i, p, s, a, u in expected_static}
        await eventually(
            lambda: orm(lambda: _static() == expected_static)(), what=f"static profiles {expected_static}"
        )
        at_chargers = {identity: _charger_limit_a(charger) for identity, charger in chargers.items()}
        assert sum(at_chargers.values()) <= 64 + 1e-6
        assert all(6 <= value <= 16 + 1e-6 for value in at_chargers.values())
        by_identity = {r.charge_point.identity: r for r in rows}
        if watts_only:
            assert (by_identity[V16[0]].unit, by_identity[V16[0]].limit) == ("W", D("11040.0"))
            assert by_identity[V16[1]].unit == "A"
        # The 2.0.1 charger took its profile in its own schema.
        v201_command = await orm(lambda: OcppCommand.objects.get(pk=by_identity[V201].command_id))()
        assert v201_command.payload["chargingProfile"]["chargingProfilePurpose"] == "TxProfile"
        assert v201_command.response == {"status": "Accepted"}

        # Nothing changed: nothing is sent.
        assert (await orm(services.site_rebalance)(site_id=site_id)).sent == []

        # A 20% grid event: 51.2 A per phase for four, and back to 64 A when it ends.
        event = await orm(_grid_event)(site_id)
        rows = await _rebalanced(site_id, 4, limit_a=D("12.8"))
        assert sum(r.limit_a for r in rows) <= D("51.2")
        at_chargers = {identity: _charger_limit_a(charger) for identity, charger in chargers.items()}
        assert sum(at_chargers.values()) <= 51.2 + 1e-6 and all(v >= 6 for v in at_chargers.values())
        await orm(services.grid_event_end)(event=event)
        rows = await _rebalanced(site_id, 4, limit_a=D("16.0"))
        assert sum(_charger_limit_a(charger) for charger in chargers.values()) == pytest.approx(64.0)

        # One stops: the other three share its part.
        stopped = chargers[V16[2]]
        session = await orm(
            lambda: ChargingSession.objects.get(charge_point__identity=V16[2], status="ACTIVE")
        )()
        answer = await command(
            V16[2], "RemoteStopTransaction", {"transactionId": session.ocpp16_transaction_id}
        )
        assert answer["response"] == {"status": "Accepted"}
        await eventually(lambda: orm(lambda: len(_active(identities)) == 3)(), what="three ACTIVE sessions")
        rows = await _rebalanced(site_id, 3)
        assert [r.limit_a for r in rows] == [D("21.3")] * 3
        remaining = [i for i in identities if i != V16[2]]
        at_chargers = {identity: _charger_limit_a(chargers[identity]) for identity in remaining}
        assert sum(at_chargers.values()) <= 64 + 1e-6
        assert all(value >= 21.2 for value in at_chargers.values()), at_chargers
        assert stopped.connectors[1].transaction is None
    finally:
        await fleet16.stop()
        await fleet201.stop()


def _cp_id(identity: str) -> int:
    return ChargePoint.objects.get(identity=identity).pk


def _sessions() -> list[tuple[Any, ...]]:
    return list(ChargingSession.objects.values_list("charge_point__identity", "status", "transaction_ref"))


def _grid_event(site_id: int) -> GridEvent:
    now = clock.now()
    return services.grid_event_declare(
        sites=[Site.objects.get(pk=site_id)],
        reduce_percent=D("20"),
        starts_at=now,
        ends_at=now + timedelta(minutes=30),
    )
