"""The floor: a bare `websockets` server with the `ocpp` library's v16 ChargePoint, nothing else.

    python -m benchmarks.floor_server --port P [--uvloop] [--max-seconds S]

Same validation settings as the product (`ocpp.messages.ASYNC_VALIDATION = False`; schemas are still
validated), ocpp1.6 subprotocol, loopback only, stops by itself after --max-seconds.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
from datetime import UTC, datetime

import ocpp.messages
from ocpp.routing import on
from ocpp.v16 import ChargePoint, call_result
from ocpp.v16.enums import Action, RegistrationStatus
from websockets.asyncio.server import serve

ocpp.messages.ASYNC_VALIDATION = False


def _now() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"


class FloorChargePoint(ChargePoint):
    @on(Action.boot_notification)
    async def on_boot_notification(self, charge_point_vendor: str, charge_point_model: str, **kwargs):
        return call_result.BootNotification(
            current_time=_now(), interval=300, status=RegistrationStatus.accepted
        )

    @on(Action.heartbeat)
    async def on_heartbeat(self, **kwargs):
        return call_result.Heartbeat(current_time=_now())

    @on(Action.meter_values)
    async def on_meter_values(self, connector_id: int, meter_value: list, **kwargs):
        return call_result.MeterValues()  # the floor stores nothing


async def handler(websocket) -> None:
    identity = websocket.request.path.rstrip("/").rsplit("/", 1)[-1]
    cp = FloorChargePoint(identity, websocket)
    with contextlib.suppress(Exception):
        await cp.start()


async def main(port: int, max_seconds: float, max_size: int) -> None:
    async with serve(handler, "127.0.0.1", port, subprotocols=["ocpp1.6"], max_size=max_size):
        print(f"floor server listening on 127.0.0.1:{port}", flush=True)
        await asyncio.sleep(max_seconds)


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--max-seconds", type=float, default=300)
    parser.add_argument("--max-size", type=int, default=1024 * 1024)
    parser.add_argument("--uvloop", action="store_true")
    args = parser.parse_args()
    if args.uvloop:
        import uvloop

        uvloop.run(main(args.port, args.max_seconds, args.max_size))
    else:
        asyncio.run(main(args.port, args.max_seconds, args.max_size))
