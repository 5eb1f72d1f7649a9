"""The command path's plumbing: the one-round-trip send to a connection's channel, the layer's receive of
process-specific channels (with contract tests on the channels-redis internals both rely on), and the one
outcome recorder: one statement for an outcome that needs no follow-up, published once after commit under
the command's message id."""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import json
import queue
import threading
import time
from typing import Any

import pytest
import redis
from asgiref.sync import sync_to_async
from channels.exceptions import ChannelFull
from channels.layers import get_channel_layer
from channels_redis.core import RedisChannelLayer as ChannelsRedisLayer
from django.conf import settings
from django.db import OperationalError, connection, transaction
from django.db.backends.utils import CursorWrapper
from django.test.utils import CaptureQueriesContext

from apps.accounts.models import AuditRecord
from apps.ocpp_gateway import consumer, delivery, layers, presence, services
from apps.ocpp_gateway.choices import CommandStatus
from apps.ocpp_gateway.connection import CommandOutcome
from apps.ocpp_gateway.models import LocalAuthListMember, OcppCommand, command_outcome_shape
from apps.ocpp_gateway.redis_clients import sync_redis
from apps.ocpp_gateway.services import (
    command_record_outcome,
    command_send,
    command_wait,
    commands_sweep,
    outcome_key,
    outcome_needs_follow_up,
)
from apps.stations import keys
from cpo.exceptions import NotFound
from tests.factories import ChargePointFactory, LocalAuthListFactory, OcppCommandFactory

NEW_KEY = "fedcba9876543210fedcba98"


async def _bounded(cleanup: Any, timeout_s: float = 10.0) -> None:
    """A test's clean-up of its own channel layer, bounded: channels-redis receivers cancelled together can
    leave the gather (or a flush behind them) waiting forever on a full run; what the test checks was
    asserted before, so a clean-up that does not finish in time must not hang the suite."""
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(cleanup, timeout_s)


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
    assert [(await asyncio.wait_for(layer.receive(channel), 5))["n"] for _ in range(2)] == [0, 1]
    await _bounded(layer.flush())


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
        await _bounded(asyncio.gather(*tasks, return_exceptions=True))
        await _bounded(layer.flush())


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
    await _bounded(layer.flush())


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
    await _bounded(layer.flush())


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
    """The waiter does not sit out the command's hour-long deadline: it returns as soon as it looks (the
    bound below only turns a hang into a clear failure)."""
    cp = ChargePointFactory()
    command = command_send(charge_point=cp, action="ClearCache", payload={}, timeout_s=3600)
    outcomes: queue.Queue = queue.Queue()

    def waiter() -> None:
        try:
            outcomes.put(command_wait(command_id=command.pk))
        finally:
            connection.close()

    threading.Thread(target=waiter, daemon=True).start()
    try:
        outcome = outcomes.get(timeout=60)
    except queue.Empty:
        pytest.fail(
            "command_wait still waits for an offline charger's command (its deadline is an hour away)"
        )
    assert outcome["status"] == CommandStatus.CHARGER_OFFLINE


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
    command_send(charge_point=cp, action="ClearCache", payload={}, timeout_s=5)  # first-call costs paid
    services._command_ids.ensure(1)  # the next id is at hand (a block may have just run out)
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


# --- one recorder, one publisher ----------------------------------------------------------------------
def _published_outcomes() -> list[str]:
    """Every outcome list in Redis, under whatever key it was published."""
    return sorted(key.decode() for key in sync_redis().scan_iter(match="cpo:ocpp:*outcome*"))


@pytest.mark.asyncio
@pytest.mark.django_db(transaction=True)
async def test_an_outcome_whose_row_could_not_be_made_final_is_never_published(monkeypatch):
    """The charger answered, but the row could not be written: no waiter may read an outcome the row does
    not hold (it sees the command time out instead, which the row then records)."""
    command = await sync_to_async(_open_command)(action="ClearCache", payload={})
    original_execute = CursorWrapper.execute

    def failing_execute(self, sql, params=None):
        if "ocpp_gateway_ocppcommand" in sql and sql.lstrip().upper().startswith(("UPDATE", "WITH")):
            raise OperationalError("the database went away")
        return original_execute(self, sql, params)

    monkeypatch.setattr(CursorWrapper, "execute", failing_execute)
    event = {
        "type": "ocpp.command",
        "command_id": command.pk,
        "unique_id": command.unique_id,
        "action": "ClearCache",
        "payload": {},
        "deadline_ts": command.deadline.timestamp(),
        "epoch": 1,
        "new_key": False,
        "follow_up": False,
    }
    with pytest.raises(OperationalError):
        await consumer._record_outcome(
            event, CommandOutcome(CommandStatus.ANSWERED, response={"status": "Accepted"})
        )
    monkeypatch.undo()
    assert _published_outcomes() == []
    assert (await OcppCommand.objects.aget(pk=command.pk)).status == CommandStatus.SENT
    await sync_to_async(lambda: connection.close())()  # the worker thread's connection


def test_an_outcome_is_published_once_whoever_else_finalises_the_command(transactional_db):
    command = _open_command(action="ClearCache", payload={})
    key = outcome_key(command.unique_id)
    command_record_outcome(
        command_id=command.pk,
        status=CommandStatus.ANSWERED,
        response={"status": "Accepted"},
        action="ClearCache",
        has_new_key=False,
    )
    command_record_outcome(command_id=command.pk, status=CommandStatus.TIMEOUT)  # e.g. the sweep, late
    commands_sweep(grace_s=-3600)
    assert [json.loads(item) for item in sync_redis().lrange(key, 0, -1)] == [
        OcppCommand.objects.get(pk=command.pk).outcome()
    ]


def test_an_outcome_with_a_follow_up_is_published_after_the_follow_up_committed(transactional_db):
    """The answer to GetLocalListVersion updates the list membership in the same transaction as the row;
    a waiter woken by the outcome finds both."""
    cp = ChargePointFactory()
    member = LocalAuthListMember.objects.create(
        local_list=LocalAuthListFactory(organisation=cp.organisation), charge_point=cp
    )
    command = _open_command(charge_point=cp, action="GetLocalListVersion", payload={})
    seen = []

    def publish(unique_id, outcome):
        # What a waiter woken now would read from another connection.
        seen.append(
            (
                OcppCommand.objects.get(pk=command.pk).status,
                LocalAuthListMember.objects.get(pk=member.pk).reported_version,
                outcome["status"],
            )
        )

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(services, "_outcome_publish", publish)
        with transaction.atomic():
            command_record_outcome(
                command_id=command.pk,
                status=CommandStatus.ANSWERED,
                response={"listVersion": 4},
                action="GetLocalListVersion",
                has_new_key=False,
            )
            assert seen == []
    assert seen == [(CommandStatus.ANSWERED, 4, CommandStatus.ANSWERED)]


def test_a_wrong_action_hint_never_skips_a_follow_up(db):
    """The one-statement path checks the row is the command the hint describes: a GetLocalListVersion
    recorded with a ClearCache hint still records the version it reported."""
    cp = ChargePointFactory()
    member = LocalAuthListMember.objects.create(
        local_list=LocalAuthListFactory(organisation=cp.organisation), charge_point=cp
    )
    command = _open_command(charge_point=cp, action="GetLocalListVersion", payload={})
    command_record_outcome(
        command_id=command.pk,
        status=CommandStatus.ANSWERED,
        response={"listVersion": 4},
        action="ClearCache",
        has_new_key=False,
    )
    member.refresh_from_db()
    assert member.reported_version == 4
    assert OcppCommand.objects.get(pk=command.pk).status == CommandStatus.ANSWERED


def test_the_recorder_masks_a_charger_key_in_the_answer(transactional_db):
    command = _open_command(action="GetConfiguration", payload={})
    answer = {"configurationKey": [{"key": "AuthorizationKey", "readonly": False, "value": "s3cr3t-key"}]}
    command_record_outcome(
        command_id=command.pk,
        status=CommandStatus.ANSWERED,
        response=answer,
        action="GetConfiguration",
        has_new_key=False,
    )
    stored = OcppCommand.objects.get(pk=command.pk).response
    published = json.loads(sync_redis().lindex(outcome_key(command.unique_id), 0))["response"]
    assert "s3cr3t-key" not in json.dumps(stored) and stored == published


def test_a_waiter_never_reads_the_outcome_of_an_earlier_database_s_command(transactional_db):
    """The database is re-created (or restored) while Redis keeps its data: the sequence hands out an id
    an earlier command had, whose outcome is still published. The waiter for the new command must get
    the new command's outcome (ocpp_call used to exit 5, charger offline, for a command the charger had
    just answered)."""
    cp = ChargePointFactory()
    _online(cp.identity)
    earlier = _open_command(charge_point=cp, action="ClearCache", payload={})
    command_record_outcome(command_id=earlier.pk, status=CommandStatus.CHARGER_OFFLINE)
    # The database is re-created: the rows are gone and the sequence starts again; Redis keeps the
    # outcome. The caller is a new process (ocpp_call): no ids taken ahead.
    OcppCommand.objects.filter(pk=earlier.pk).delete()
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT setval(pg_get_serial_sequence('ocpp_gateway_ocppcommand', 'id'), %s, false)", [earlier.pk]
        )
    services._command_ids._ids.clear()
    again = command_send(charge_point=cp, action="ClearCache", payload={}, timeout_s=5)
    assert again.pk == earlier.pk
    command_record_outcome(
        command_id=again.pk, status=CommandStatus.ANSWERED, response={"status": "Accepted"}
    )
    outcome = command_wait(command_id=again.pk, timeout_s=5)
    assert outcome["status"] == CommandStatus.ANSWERED and outcome["response"] == {"status": "Accepted"}


# --- the channels-redis internals delivery.py's one-round-trip send relies on (a contract) ----------------
def test_contract_channels_redis_send_still_takes_the_steps_the_send_script_copies():
    """delivery._SEND_SCRIPT repeats RedisChannelLayer.send() in one round trip: the channel's sorted set
    at prefix + non-local name, expired members dropped, capacity checked, the serialized message (with
    __asgi_channel__) added with the time as its score, the key's expiry set. If channels-redis changes
    any of it, this fails: re-check the script against the new send() (or drop the shortcut)."""
    source = inspect.getsource(ChannelsRedisLayer.send)
    steps = [source.find(f"connection.{step}(") for step in ("zremrangebyscore", "zcount", "zadd", "expire")]
    assert -1 not in steps and steps == sorted(steps), source
    for relied_on in (
        'message["__asgi_channel__"] = channel',
        "channel_non_local_name = self.non_local_name(channel)",
        "channel_key = self.prefix + channel_non_local_name",
        "index = self.consistent_hash(channel)",
        "self.get_capacity(",
        "max=int(time.time()) - int(self.expiry)",
        "{self.serialize(message): time.time()}",
        "int(self.expiry)",
    ):
        assert relied_on in source, relied_on


def test_contract_channels_redis_receive_still_works_the_way_the_receive_script_copies():
    """layers._RECEIVE_SCRIPT replaces RedisChannelLayer.receive_single() for process-specific channels:
    receive() must still go through receive_single() with the non-local name, which pops the sorted set at
    prefix + name with BZPOPMIN, keeps the member in the backup set `_backup_channel_name()` until handed
    over (restoring it with its score after a cancelled receive) and unpacks __asgi_channel__."""
    receive = inspect.getsource(ChannelsRedisLayer.receive)
    assert "await self.receive_single(" in receive
    single = inspect.getsource(ChannelsRedisLayer.receive_single)
    for relied_on in (
        "channel_key = self.prefix + channel",
        "index = self.consistent_hash(channel)",
        "self._brpop_with_clean(",
        "message = self.deserialize(content)",
        'channel = message["__asgi_channel__"]',
    ):
        assert relied_on in single, relied_on
    pop = inspect.getsource(ChannelsRedisLayer._brpop_with_clean)
    for relied_on in (
        "backup_queue = self._backup_channel_name(channel)",
        "redis.call('ZADD', ARGV[1], backed_up[i], backed_up[i - 1])",
        "connection.bzpopmin(channel, timeout=timeout)",
        "connection.zadd(backup_queue, {member: float(timestamp)})",
    ):
        assert relied_on in pop, relied_on


@pytest.mark.asyncio
async def test_contract_the_send_script_writes_what_channels_redis_send_writes(monkeypatch):
    layer = _layer()
    monkeypatch.setattr(delivery, "get_channel_layer", lambda: layer)
    channel = await layer.new_channel()
    key = layer.prefix + layer.non_local_name(channel)
    r = layer.connection(layer.consistent_hash(channel))
    message = {"type": "ocpp.command", "command_id": 7, "payload": {"évse": [1]}}

    async def written(send) -> tuple[dict, int]:
        before = time.time()
        await send()
        after = time.time()
        ((member, score),) = await r.zrange(key, 0, -1, withscores=True)
        ttl = await r.ttl(key)
        assert before <= score <= after
        await layer.flush()
        return layer.deserialize(member), ttl

    theirs = await written(lambda: layer.send(channel, message))
    ours = await written(sync_to_async(lambda: delivery.send_to_channel(channel, message)))
    assert theirs[0] == ours[0] == {**message, "__asgi_channel__": channel}
    assert 0 < theirs[1] <= layer.expiry and 0 < ours[1] <= layer.expiry
    # and the layer receives what the script wrote, as it would its own
    await sync_to_async(delivery.send_to_channel)(channel, message)
    assert await asyncio.wait_for(layer.receive(channel), 5) == message
    await _bounded(layer.flush())


def test_recording_an_answer_costs_one_statement_and_one_redis_round_trip(
    transactional_db, django_assert_num_queries, monkeypatch
):
    """The answer path (consumer → recorder → publisher) makes no more round trips than before the one
    recorder: the one-statement write, then one pipelined RPUSH + EXPIRE."""
    command = _open_command(action="ClearCache", payload={})
    round_trips = []
    pipeline_execute, client_execute = redis.client.Pipeline.execute, redis.Redis.execute_command

    def counting_pipeline(self, *args, **kwargs):
        round_trips.append([c[0][0] for c in self.command_stack])
        return pipeline_execute(self, *args, **kwargs)

    def counting_command(self, *args, **kwargs):
        round_trips.append([args[0]])
        return client_execute(self, *args, **kwargs)

    monkeypatch.setattr(redis.client.Pipeline, "execute", counting_pipeline)
    monkeypatch.setattr(redis.Redis, "execute_command", counting_command)
    with django_assert_num_queries(1):
        command_record_outcome(
            command_id=command.pk,
            status=CommandStatus.ANSWERED,
            response={"status": "Accepted"},
            action="ClearCache",
            has_new_key=False,
        )
    monkeypatch.undo()
    assert round_trips == [["RPUSH", "EXPIRE"]]
