"""The command path's plumbing: the one-round-trip send to a connection's channel, the layer's receive of
process-specific channels, and the one-statement record of an outcome that needs no follow-up."""

from __future__ import annotations

import asyncio
import json
import time

import pytest
from asgiref.sync import sync_to_async
from channels.exceptions import ChannelFull
from channels.layers import get_channel_layer
from django.conf import settings
from django.db import connection, transaction
from django.test.utils import CaptureQueriesContext

from apps.accounts.models import AuditRecord
from apps.ocpp_gateway import delivery, layers, presence
from apps.ocpp_gateway.choices import CommandStatus
from apps.ocpp_gateway.models import OcppCommand, command_outcome_shape
from apps.ocpp_gateway.redis_clients import sync_redis
from apps.ocpp_gateway.services import (
    command_record_outcome,
    command_send,
    command_wait,
    outcome_key,
    outcome_needs_follow_up,
)
from apps.stations import keys
from cpo.exceptions import NotFound
from tests.factories import ChargePointFactory, OcppCommandFactory

NEW_KEY = "fedcba9876543210fedcba98"


def _layer(**config) -> layers.RedisChannelLayer:
    hosts = settings.CHANNEL_LAYERS["default"]["CONFIG"]["hosts"]
    return layers.RedisChannelLayer(hosts=hosts, **config)


def test_the_product_runs_the_gateway_layer():
    assert isinstance(get_channel_layer(), layers.RedisChannelLayer)


@pytest.mark.asyncio
async def test_send_to_channel_is_received_on_that_channel_only():
    layer = get_channel_layer()
    one, two = await layer.new_channel(), await layer.new_channel()
    message = {"type": "ocpp.command", "command_id": 7, "payload": {"évse": [1, 2]}, "deadline_ts": 1.5}
    await sync_to_async(delivery.send_to_channel)(one, message)
    assert await asyncio.wait_for(layer.receive(one), 5) == message
    with pytest.raises(TimeoutError):
        await asyncio.wait_for(layer.receive(two), 0.3)


@pytest.mark.asyncio
async def test_send_to_a_full_channel_raises_channel_full(monkeypatch):
    layer = _layer(capacity=2, expiry=60)
    monkeypatch.setattr(delivery, "get_channel_layer", lambda: layer)
    channel = await layer.new_channel()
    for n in range(2):
        await sync_to_async(delivery.send_to_channel)(channel, {"type": "x", "n": n})
    with pytest.raises(ChannelFull):
        await sync_to_async(delivery.send_to_channel)(channel, {"type": "x", "n": 2})
    assert [(await layer.receive(channel))["n"] for _ in range(2)] == [0, 1]
    await layer.flush()


def test_other_layers_are_sent_to_through_their_own_send(monkeypatch):
    sent = []

    class OtherLayer:
        async def send(self, channel, message):
            sent.append((channel, message))

    monkeypatch.setattr(delivery, "get_channel_layer", lambda: OtherLayer())
    delivery.send_to_channel("specific.abc!def", {"type": "ocpp.command"})
    assert sent == [("specific.abc!def", {"type": "ocpp.command"})]


@pytest.mark.asyncio
async def test_a_burst_to_many_connections_is_received_once_each_in_order(monkeypatch):
    layer = _layer()
    channels = [await layer.new_channel() for _ in range(20)]
    received: dict[str, list[int]] = {c: [] for c in channels}

    async def consumer(channel):
        while True:
            received[channel].append((await layer.receive(channel))["n"])

    tasks = [asyncio.create_task(consumer(c)) for c in channels]
    try:

        def burst():
            for n in range(3):
                for c in channels:
                    delivery.send_to_channel(c, {"type": "x", "n": n}, timeout_s=5)

        monkeypatch.setattr(delivery, "get_channel_layer", lambda: layer)
        await sync_to_async(burst)()
        for _ in range(100):
            if all(len(v) == 3 for v in received.values()):
                break
            await asyncio.sleep(0.05)
        assert received == {c: [0, 1, 2] for c in channels}
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        await layer.flush()


@pytest.mark.asyncio
async def test_a_message_left_in_the_backup_by_a_cancelled_receive_is_received_later():
    layer = _layer()
    channel = await layer.new_channel()
    channel_key = layer.prefix + layer.non_local_name(channel)
    backup_key = layer._backup_channel_name(channel_key)
    r = sync_redis()
    # As a receive cancelled after taking the message leaves it: popped, and copied to the backup.
    member = layer.serialize({"type": "x", "n": 1, "__asgi_channel__": channel})
    r.zadd(backup_key, {member: 1.0})
    assert (await asyncio.wait_for(layer.receive(channel), 5))["n"] == 1
    # The next receive removes the delivered message from the backup and does not deliver it again.
    await sync_to_async(delivery.send_to_channel)(channel, {"type": "x", "n": 2})
    assert (await asyncio.wait_for(layer.receive(channel), 5))["n"] == 2
    assert r.zcard(backup_key) == 1  # only the message just delivered
    with pytest.raises(TimeoutError):
        await asyncio.wait_for(layer.receive(channel), 0.3)
    await layer.flush()


# --- recording outcomes --------------------------------------------------------------------------------
def _open_command(**kwargs) -> OcppCommand:
    return OcppCommandFactory(status=CommandStatus.SENT, response=None, completed_at=None, **kwargs)


def test_outcome_without_follow_up_is_recorded_once(db):
    command = _open_command(action="ClearCache", payload={})
    assert not outcome_needs_follow_up(action="ClearCache", has_new_key=False, status=CommandStatus.ANSWERED)
    command_record_outcome(
        command_id=command.pk,
        status=CommandStatus.ANSWERED,
        response={"status": "Accepted"},
        action="ClearCache",
        has_new_key=False,
    )
    command.refresh_from_db()
    assert command.status == CommandStatus.ANSWERED and command.response == {"status": "Accepted"}
    assert command.completed_at is not None
    # The first recorded outcome wins.
    command_record_outcome(
        command_id=command.pk, status=CommandStatus.TIMEOUT, action="ClearCache", has_new_key=False
    )
    command.refresh_from_db()
    assert command.status == CommandStatus.ANSWERED


def test_outcome_store_costs_one_statement_for_the_winner_and_for_the_loser(db, django_assert_num_queries):
    """A second store of an outcome (e.g. the sweep's timeout racing the consumer's answer) finds the row
    final in the same single statement, without a locking transaction of its own."""
    command = _open_command(action="ClearCache", payload={})
    with django_assert_num_queries(1):
        command_record_outcome(
            command_id=command.pk,
            status=CommandStatus.ANSWERED,
            response={"status": "Accepted"},
            action="ClearCache",
            has_new_key=False,
        )
    with django_assert_num_queries(1):
        command_record_outcome(
            command_id=command.pk,
            status=CommandStatus.ANSWERED,
            response={"status": "Accepted"},
            action="ClearCache",
            has_new_key=False,
        )
    command.refresh_from_db()
    assert command.status == CommandStatus.ANSWERED and command.response == {"status": "Accepted"}


def test_outcome_store_without_response_keeps_sql_null(db):
    command = _open_command(action="ClearCache", payload={})
    command_record_outcome(
        command_id=command.pk,
        status=CommandStatus.CHARGER_DISCONNECTED,
        action="ClearCache",
        has_new_key=False,
        error_description="gone",
    )
    assert OcppCommand.objects.filter(pk=command.pk, response__isnull=True, error_description="gone").exists()


def test_outcome_store_for_a_missing_command_does_nothing(db, django_assert_num_queries):
    with django_assert_num_queries(1):
        command_record_outcome(
            command_id=987654, status=CommandStatus.TIMEOUT, action="ClearCache", has_new_key=False
        )


def test_answer_with_a_new_key_takes_the_full_path(db):
    cp = ChargePointFactory()
    command = _open_command(
        charge_point=cp,
        action="ChangeConfiguration",
        payload={"key": "AuthorizationKey", "value": "***"},
        new_key_hash=keys.hash_key(NEW_KEY),
    )
    assert outcome_needs_follow_up(
        action="ChangeConfiguration", has_new_key=True, status=CommandStatus.ANSWERED
    )
    command_record_outcome(
        command_id=command.pk,
        status=CommandStatus.ANSWERED,
        response={"status": "Accepted"},
        action="ChangeConfiguration",
        has_new_key=True,
    )
    cp.refresh_from_db()
    assert keys.verify_key(NEW_KEY, cp.auth_key_hash)
    assert AuditRecord.objects.filter(action="chargepoint.key_changed").exists()


def test_a_wrong_hint_never_skips_a_key_change(db):
    cp = ChargePointFactory()
    command = _open_command(
        charge_point=cp,
        action="ChangeConfiguration",
        payload={"key": "AuthorizationKey", "value": "***"},
        new_key_hash=keys.hash_key(NEW_KEY),
    )
    command_record_outcome(
        command_id=command.pk,
        status=CommandStatus.ANSWERED,
        response={"status": "Accepted"},
        action="ChangeConfiguration",
        has_new_key=False,
    )
    command.refresh_from_db()
    cp.refresh_from_db()
    # the fast path refused the row, so the full path ran: the answer and the key change are both recorded
    assert command.status == CommandStatus.ANSWERED
    assert keys.verify_key(NEW_KEY, cp.auth_key_hash)


def test_an_unknown_hint_takes_the_full_path(db):
    command = _open_command(action="GetLocalListVersion", payload={})
    command_record_outcome(command_id=command.pk, status=CommandStatus.ANSWERED, response={"listVersion": 3})
    command.refresh_from_db()
    assert command.status == CommandStatus.ANSWERED


def test_failures_never_need_a_follow_up(db):
    command = _open_command(action="GetLocalListVersion", payload={})
    assert not outcome_needs_follow_up(
        action="GetLocalListVersion", has_new_key=False, status=CommandStatus.CHARGER_DISCONNECTED
    )
    command_record_outcome(
        command_id=command.pk,
        status=CommandStatus.CHARGER_DISCONNECTED,
        action="GetLocalListVersion",
        has_new_key=False,
    )
    command.refresh_from_db()
    assert command.status == CommandStatus.CHARGER_DISCONNECTED


def test_every_waiter_gets_the_outcome(db):
    command = _open_command(action="ClearCache", payload={})
    message = json.dumps(
        command_outcome_shape(
            command_id=command.pk,
            action="ClearCache",
            status=CommandStatus.ANSWERED,
            response={"status": "Accepted"},
            error_code="",
            error_description="",
        )
    )
    sync_redis().rpush(outcome_key(command.unique_id), message)
    first = command_wait(command_id=command.pk, timeout_s=2)
    second = command_wait(command_id=command.pk, timeout_s=2)  # the row is final by now
    assert first == second == json.loads(message)
    assert sync_redis().lrange(outcome_key(command.unique_id), 0, -1) == [message]


@pytest.mark.asyncio
async def test_messages_waiting_together_are_taken_in_one_round_trip(monkeypatch):
    layer = _layer()
    monkeypatch.setattr(delivery, "get_channel_layer", lambda: layer)
    channels = [await layer.new_channel() for _ in range(5)]
    for n, channel in enumerate(channels):
        await sync_to_async(delivery.send_to_channel)(channel, {"type": "x", "n": n})
    connection = layer.connection(0)
    evals = []
    original_eval = connection.eval

    async def counting_eval(*args, **kwargs):
        evals.append(args[0][:20])
        return await original_eval(*args, **kwargs)

    monkeypatch.setattr(connection, "eval", counting_eval)
    got = [(await asyncio.wait_for(layer.receive(c), 5))["n"] for c in channels]
    assert got == [0, 1, 2, 3, 4]
    assert len(evals) == 1
    await layer.flush()


# --- waiting in the process that sent ------------------------------------------------------------------
def _online(identity: str) -> None:
    sync_redis().hset(
        presence.PREFIX + identity,
        mapping={
            "channel": "specific.test!nobody",
            "epoch": 1,
            "server": "test",
            "connected_at": 0,
            "last_frame_at": 0,
        },
    )


def test_the_sending_process_waits_without_reading_or_writing_the_row(transactional_db):
    """The recorder makes the row final and then publishes the outcome, so the waiter in the process that
    sent the command returns what it reads from Redis and never touches the database."""
    cp = ChargePointFactory()
    _online(cp.identity)
    command = command_send(charge_point=cp, action="ClearCache", payload={}, timeout_s=5)
    command_record_outcome(
        command_id=command.pk,
        status=CommandStatus.ANSWERED,
        response={"status": "Accepted"},
        action="ClearCache",
        has_new_key=False,
    )
    with CaptureQueriesContext(connection) as queries:
        outcome = command_wait(command_id=command.pk, timeout_s=2)
    assert outcome["status"] == CommandStatus.ANSWERED and outcome["response"] == {"status": "Accepted"}
    assert queries.captured_queries == []
    command.refresh_from_db()
    assert command.outcome() == outcome


def test_an_outcome_recorded_in_a_transaction_is_published_only_on_commit(transactional_db):
    """command_record_outcome publishes on commit: a waiter woken by it finds the row final already."""
    command = _open_command(action="ClearCache", payload={})
    key = outcome_key(command.unique_id)
    with transaction.atomic():
        command_record_outcome(command_id=command.pk, status=CommandStatus.TIMEOUT, error_description="late")
        assert sync_redis().llen(key) == 0
    assert json.loads(sync_redis().lindex(key, 0))["status"] == CommandStatus.TIMEOUT
    assert OcppCommand.objects.get(pk=command.pk).status == CommandStatus.TIMEOUT


def test_an_offline_charger_fails_at_once_for_the_sending_process_too(transactional_db):
    cp = ChargePointFactory()
    command = command_send(charge_point=cp, action="ClearCache", payload={}, timeout_s=5)
    started = time.monotonic()
    assert command_wait(command_id=command.pk)["status"] == CommandStatus.CHARGER_OFFLINE
    assert time.monotonic() - started < 1


def test_a_command_rolled_back_with_its_transaction_is_not_found(transactional_db):
    cp = ChargePointFactory()
    _online(cp.identity)

    class Rollback(Exception):
        pass

    with pytest.raises(Rollback), transaction.atomic():
        command = command_send(charge_point=cp, action="ClearCache", payload={}, timeout_s=5)
        raise Rollback
    with pytest.raises(NotFound):
        command_wait(command_id=command.pk, timeout_s=1)


def test_a_command_that_times_out_is_recorded_so_for_the_sending_process(transactional_db):
    cp = ChargePointFactory()
    _online(cp.identity)
    command = command_send(charge_point=cp, action="ClearCache", payload={}, timeout_s=1)
    assert command_wait(command_id=command.pk)["status"] == CommandStatus.TIMEOUT
    command.refresh_from_db()
    assert command.status == CommandStatus.TIMEOUT


def test_command_send_records_the_command_and_its_audit_record_in_one_statement(transactional_db):
    cp = ChargePointFactory()
    _online(cp.identity)
    command_send(charge_point=cp, action="ClearCache", payload={}, timeout_s=5)  # the id block is taken
    with CaptureQueriesContext(connection) as queries:
        command = command_send(charge_point=cp, action="ClearCache", payload={}, timeout_s=5)
    assert len(queries.captured_queries) == 1  # no BEGIN/COMMIT round trips of its own either
    assert OcppCommand.objects.get(pk=command.pk).status == CommandStatus.SENT
    record = AuditRecord.objects.get(action="ocpp.ClearCache", detail__command_id=command.pk)
    assert record.target_id == str(cp.pk)


def test_command_send_inside_a_failed_transaction_leaves_neither_row(transactional_db):
    cp = ChargePointFactory()
    _online(cp.identity)
    with pytest.raises(RuntimeError), transaction.atomic():
        command = command_send(charge_point=cp, action="ClearCache", payload={}, timeout_s=5)
        raise RuntimeError("the caller's transaction fails")
    assert not OcppCommand.objects.filter(pk=command.pk).exists()
    assert not AuditRecord.objects.filter(detail__command_id=command.pk).exists()
