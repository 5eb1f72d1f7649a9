"""Shared fixtures. Tests run against PostgreSQL/PostGIS and Redis on loopback (make test ensures both)."""

from __future__ import annotations

import asyncio
import asyncio.runners
import logging

import pytest

from tests.factories import OrganisationFactory, StaffUserFactory


@pytest.fixture
def org_a(db):
    return OrganisationFactory(name="Alpha Charging", slug="alpha")


@pytest.fixture
def org_b(db):
    return OrganisationFactory(name="Beta Power", slug="beta")


@pytest.fixture
def superuser(db):
    from apps.accounts.models import User

    return User.objects.create_superuser(email="root@example.com", password="root-password-123")


@pytest.fixture
def staff_a(org_a):
    """An operator admin of org_a."""
    return StaffUserFactory(organisation=org_a, role="Operator admin")


@pytest.fixture
def staff_b(org_b):
    return StaffUserFactory(organisation=org_b, role="Operator admin")


# --- bounded event-loop teardown ---------------------------------------------------------------------
# pytest-asyncio closes each test's loop with asyncio.runners._cancel_all_tasks, which waits without limit
# for every task to finish after cancel(). A task left behind by a failed or interrupted test (seen
# rarely: a consumer's channel-layer receive still being cleaned up) could then hang the whole run. Wait a
# bounded time instead, and name what did not finish so it can be fixed.
_STUCK_TASK_WAIT_S = 15.0


def _bounded_cancel_all_tasks(loop: asyncio.AbstractEventLoop) -> None:
    tasks = [t for t in asyncio.all_tasks(loop) if not t.done()]
    if not tasks:
        return
    for task in tasks:
        task.cancel()
    done, pending = loop.run_until_complete(asyncio.wait(tasks, timeout=_STUCK_TASK_WAIT_S))
    for task in pending:
        logging.getLogger("tests").error(
            "task still running %.0f s after cancel at loop teardown: %r\n%s",
            _STUCK_TASK_WAIT_S,
            task,
            "".join(_stack(task)),
        )
    for task in done:
        if not task.cancelled() and task.exception() is not None:
            loop.call_exception_handler(
                {
                    "message": "unhandled exception during loop teardown",
                    "exception": task.exception(),
                    "task": task,
                }
            )


def _stack(task: asyncio.Task) -> list[str]:
    import io

    out = io.StringIO()
    task.print_stack(file=out)
    return [out.getvalue()]


asyncio.runners._cancel_all_tasks = _bounded_cancel_all_tasks
