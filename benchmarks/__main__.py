"""`python -m benchmarks` (`make bench`): floor vs stack throughput, idle RSS, command latency, driver start
latency (POST /api/v1/sessions to the charger receiving its start command, benchmarks/driver_start.py;
card drivers whose starts take a hold at localstripe first, unless --no-driver-payments),
driver API latency with 2,000 live streams open on one process (benchmarks/live_streams.py), rebalance latency
(the last of 50 starts at one site to the last charging profile accepted, benchmarks/rebalance.py), a
reconnect storm (5,000 chargers arriving at 500/s at one process, then the bare floor under the same
arrivals: phase `storm`), and MeterValues stored by the product against the floor answering them
(phase `meter`).
Select phases with --phases (BENCH_ARGS="--phases live" runs the live streams alone).

Bounded to --budget seconds (600 by default) with a time box per phase; a watchdog stops everything
and still prints the JSON line if the budget runs out. Every server and client runs on 127.0.0.1 in
its own process group and dies with the bench. The LAST line printed is one JSON object.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import signal
import subprocess
import sys
import tempfile
import threading
import time
import traceback
from pathlib import Path
from typing import Any

from benchmarks import phases, setup
from benchmarks.common import ROOT, Child, raise_fd_limit, say

_print_lock = threading.Lock()
LIVE_BOX = 130.0  # seconds the live streams phase may take (about 100 s here)
REBALANCE_BOX = 120.0  # seconds the rebalance phase may take (50 chargers, warm-up and 5 rounds: 40-90 s)
_printed = False


def final_line(figures: dict[str, Any]) -> None:
    global _printed
    with _print_lock:
        if _printed:
            return
        _printed = True
        sys.stdout.write(json.dumps(figures, separators=(", ", ": "), default=str) + "\n")
        sys.stdout.flush()


def git_head() -> str | None:
    try:
        return (
            subprocess.run(
                ["git", "rev-parse", "--short", "HEAD"],  # noqa: S607 - git from PATH
                cwd=ROOT,
                capture_output=True,
                text=True,
                timeout=5,
            ).stdout.strip()
            or None
        )
    except (OSError, subprocess.SubprocessError):
        return None


def parse_args() -> argparse.Namespace:
    p = argparse.ArgumentParser(
        prog="python -m benchmarks", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--budget", type=float, default=600, help="total seconds (default 600)")
    p.add_argument(
        "--phases",
        default="floor,stack,idle,commands,driver,rebalance,live,storm,meter",
        help="comma-separated subset",
    )
    p.add_argument(
        "--server",
        choices=["uvicorn", "uvicorn-sansio", "daphne"],
        default="uvicorn-sansio",
        help="ASGI server of the stack",
    )
    p.add_argument("--clients", type=int, default=100, help="closed-loop clients (floor and stack)")
    p.add_argument("--generators", type=int, default=2, help="load-generator processes")
    p.add_argument("--runs", type=int, default=3, help="runs per throughput phase (median)")
    p.add_argument("--warmup", type=float, default=2.0)
    p.add_argument("--duration", type=float, default=10.0, help="measured seconds per run")
    p.add_argument(
        "--floor-uvloop",
        action="store_true",
        help="also measure the floor on uvloop (the event loop uvicorn uses)",
    )
    p.add_argument("--idle", type=int, default=10_000, help="idle chargers to hold (max 10,000)")
    p.add_argument("--fleet", type=int, default=5_000, help="heartbeating chargers in the commands phase")
    p.add_argument("--commands", type=int, default=300)
    p.add_argument("--threads", type=int, default=10, help="threads for the concurrent half of the commands")
    p.add_argument(
        "--caller-procs",
        type=int,
        default=10,
        help="then as many commands again from this many caller processes at once (0: skip)",
    )
    p.add_argument("--driver-chargers", type=int, default=1000, help="chargers connected in the driver phase")
    p.add_argument("--driver-starts", type=int, default=200, help="driver starts (POST /api/v1/sessions)")
    p.add_argument("--driver-rate", type=float, default=10.0, help="driver starts per second (open loop)")
    p.add_argument(
        "--driver-payments",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="driver phase: card drivers, a hold at localstripe before each start (default: on)",
    )
    p.add_argument(
        "--rebalance-chargers", type=int, default=50, help="chargers at the rebalance phase's site"
    )
    p.add_argument("--rebalance-rounds", type=int, default=5, help="bursts of starts in the rebalance phase")
    p.add_argument("--live-streams", type=int, default=2000, help="live streams held open in the live phase")
    p.add_argument("--live-rate", type=float, default=25.0, help="driver API reads per second (open loop)")
    p.add_argument(
        "--live-publish-rate", type=float, default=20.0, help="session changes published per second"
    )
    p.add_argument(
        "--live-seconds", type=float, default=15.0, help="measured seconds per window (idle, streams, idle)"
    )
    p.add_argument("--storm-chargers", type=int, default=5000, help="chargers arriving in the storm phase")
    p.add_argument("--storm-rate", type=float, default=500.0, help="storm arrivals per second")
    p.add_argument("--storm-hb", type=float, default=10.0, help="storm: heartbeat interval once booted (s)")
    p.add_argument(
        "--storm-open-timeout", type=float, default=10.0, help="storm: a charger's handshake timeout (s)"
    )
    p.add_argument("--hb-min", type=float, default=5.0)
    p.add_argument("--hb-max", type=float, default=10.0)
    p.add_argument(
        "--server-env",
        action="append",
        default=[],
        metavar="NAME=VALUE",
        help="extra environment for the product servers (experiments), e.g. CPO_OCPP_MESSAGE_LOG=0",
    )
    args = p.parse_args()
    args.idle = max(1, min(args.idle, 10_000))
    args.budget = max(60.0, min(args.budget, 600.0))
    return args


def main() -> int:
    args = parse_args()
    started = time.monotonic()
    deadline = started + args.budget
    wanted = {p.strip() for p in args.phases.split(",") if p.strip()}
    env = setup.bench_env()
    server_env = dict(env)
    server_overrides: dict[str, str] = {}  # experiments only: --server-env NAME=VALUE
    for item in args.server_env:
        name, _, value = item.partition("=")
        server_overrides[name] = value
    server_env.update(server_overrides)
    fd_limit = raise_fd_limit()
    log_dir = Path(tempfile.mkdtemp(prefix="cpo-bench-"))
    figures: dict[str, Any] = {
        "floor_msgs_per_s": None,
        "stack_msgs_per_s": None,
        "ratio": None,
        "idle_connections": None,
        "rss_kb_per_connection": None,
        "command_p50_ms": None,
        "command_p99_ms": None,
        "driver_start_p99_ms": None,
        "driver_start_payments": None,
        "rebalance_p99_ms": None,
        "live_streams": None,
        "live_streams_api_p99_ms": None,
        "live_streams_api_idle_p99_ms": None,
        "storm_seconds": None,
        "storm_failed": None,
        "storm_boot_p99_ms": None,
        "storm_floor_seconds": None,
        "storm_floor_boot_p99_ms": None,
        "meter_values_msgs_per_s": None,
        "meter_values_ratio": None,
        "server": {
            "uvicorn": "uvicorn (--ws websockets) + Channels + gateway",
            "uvicorn-sansio": "uvicorn (--ws websockets-sansio) + Channels + gateway",
            "daphne": "daphne + Channels + gateway",
        }[args.server],
        "server_env": server_overrides or None,
        "security_profile": 1,
        "clients": args.clients,
        "generators": args.generators,
        "git": git_head(),
        "cpus": os.cpu_count(),
        "python": platform.python_version(),
        "floor_loop": "asyncio",
        "loadavg_start": [round(x, 2) for x in os.getloadavg()],
        "errors": [],
    }

    def abort(reason: str) -> None:
        figures["errors"].append(reason)
        figures["elapsed_s"] = round(time.monotonic() - started, 1)
        Child.stop_all(grace=1.0)
        final_line(figures)

    def watchdog() -> None:
        say(f"bench: budget of {args.budget:.0f} s reached; stopping everything")
        abort("budget reached")
        os._exit(2)

    timer = threading.Timer(args.budget - 3, watchdog)
    timer.daemon = True
    timer.start()

    def on_signal(signum: int, _frame: Any) -> None:
        raise KeyboardInterrupt(f"signal {signum}")

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGHUP, on_signal)

    ctx = phases.Ctx(env, log_dir, deadline, args.server, server_env)
    say(
        f"CPO gateway benchmarks: budget {args.budget:.0f} s, phases {sorted(wanted)}, fd limit {fd_limit}, "
        f"logs in {log_dir}"
    )
    say(
        f"  database {env['DATABASE_URL']}, Redis {env['REDIS_URL']}, load average {figures['loadavg_start']}"
    )

    def phase(name: str, fn: Any, min_left: float) -> None:
        if not set(name.split("+")) & wanted:
            return
        left = deadline - time.monotonic()
        if left < min_left:
            figures["errors"].append(f"{name}: skipped, {left:.0f} s left of the budget")
            say(f"\n[{name}] skipped: only {left:.0f} s left")
            return
        say(f"\n[{name}]")
        t = time.monotonic()
        setup.flush_redis(env["REDIS_URL"])  # no presence left over from the previous phase's servers
        try:
            fn()
        except KeyboardInterrupt:
            raise
        except Exception as exc:
            figures["errors"].append(f"{name}: {type(exc).__name__}: {exc}")
            say(f"  {name} failed: {exc}")
            traceback.print_exc(file=sys.stdout)
        finally:
            Child.stop_all(grace=1.0)
        say(f"  ({name} took {time.monotonic() - t:.0f} s)")

    try:

        def do_setup() -> None:
            setup.create_database(env["DATABASE_URL"])
            took = setup.migrate(env, timeout=90)
            setup.django_setup(env)
            count = max(
                args.clients,
                args.idle if "idle" in wanted else 0,
                args.fleet if "commands" in wanted else 0,
                args.driver_chargers if "driver" in wanted else 0,
                args.rebalance_chargers if "rebalance" in wanted else 0,
                min(args.live_streams, 1000) if "live" in wanted else 0,
                args.storm_chargers + 10 if "storm" in wanted else 0,  # 10 more warm the server up
                20,
            )
            created = setup.ensure_charge_points(count)
            setup.flush_redis(env["REDIS_URL"])
            say(
                f"  migrated in {took:.0f} s; charge points {created} (security profile 1, HTTP Basic keys "
                f"hashed with keys.hash_key); Redis db flushed"
            )

        say("\n[setup]")
        do_setup()

        def do_throughput() -> None:
            targets = {}
            if "floor" in wanted:
                targets["floor"] = (lambda: phases.start_floor_server(ctx, 300), False)
            if "stack" in wanted:
                targets["stack"] = (lambda: phases.start_stack_server(ctx, "stack-server"), True)
            if args.floor_uvloop and "floor" in wanted:
                targets["floor-uvloop"] = (lambda: phases.start_floor_server(ctx, 300, uvloop=True), False)
            say(
                f"  {args.clients} closed-loop clients in {args.generators} generator processes, "
                f"Heartbeat round trips, {args.warmup:g} s warm-up + {args.duration:g} s measured per run; "
                "floor and stack runs interleaved"
            )
            res = phases.throughput(
                ctx,
                targets,
                runs=args.runs,
                n_clients=args.clients,
                procs=args.generators,
                warmup=args.warmup,
                duration=args.duration,
                box=190,
            )
            for label, key in (("floor", "floor"), ("stack", "stack"), ("floor-uvloop", "floor_uvloop")):
                r = res.get(label)
                if r is None:
                    continue
                figures.update(
                    {
                        f"{key}_msgs_per_s": r["msgs_per_s"],
                        f"{key}_p50_ms": r["p50_ms"],
                        f"{key}_p99_ms": r["p99_ms"],
                        f"{key}_runs": r["runs"],
                        f"{key}_server_cpu": r["server_cpu"],
                        f"{key}_msgs_per_cpu_s": r["msgs_per_cpu_s"],
                    }
                )
                say(
                    f"  {label}: {r['msgs_per_s']:,} msgs/s (median of {r['runs']}), p50 {r['p50_ms']} ms, "
                    f"p99 {r['p99_ms']} ms; {r['msgs_per_cpu_s']:,} msgs per server CPU-second"
                )
            if res.get("floor") and res.get("stack"):
                figures["ratio"] = round(res["stack"]["msgs_per_s"] / res["floor"]["msgs_per_s"], 3)
                figures["ratio_per_cpu"] = round(
                    res["stack"]["msgs_per_cpu_s"] / res["floor"]["msgs_per_cpu_s"], 3
                )
                say(
                    f"  ratio stack/floor: {figures['ratio']:.2f} (per server CPU-second: "
                    f"{figures['ratio_per_cpu']:.2f})"
                )

        def do_idle() -> None:
            # The live streams phase comes last and takes what the others leave (it needs about 100 s;
            # the phases before it rarely use their whole boxes): it reserves nothing here.
            reserve = (
                (200 if "commands" in wanted else 10)
                + (120 if "driver" in wanted else 0)
                + (REBALANCE_BOX if "rebalance" in wanted else 0)
            )
            box = min(260.0, deadline - time.monotonic() - reserve)
            figures.update(phases.idle(ctx, target=args.idle, procs=2, concurrency=50, box=box))

        def do_commands() -> None:
            box = min(
                200.0,
                deadline
                - time.monotonic()
                - (125 if "driver" in wanted else 8)
                - (REBALANCE_BOX if "rebalance" in wanted else 0)
                - (LIVE_BOX / 2 if "live" in wanted else 0),
            )
            figures.update(
                phases.commands(
                    ctx,
                    chargers=args.fleet,
                    n_commands=args.commands,
                    threads=args.threads,
                    caller_procs=args.caller_procs,
                    hb_min=args.hb_min,
                    hb_max=args.hb_max,
                    box=box,
                )
            )

        if wanted & {"floor", "stack"}:
            phase("floor+stack", do_throughput, 40)
        phase("idle", do_idle, 60)
        phase("commands", do_commands, 60)

        def do_driver() -> None:
            from benchmarks import driver_start

            box = min(
                120.0,
                deadline
                - time.monotonic()
                - 8
                - (REBALANCE_BOX if "rebalance" in wanted else 0)
                - (LIVE_BOX / 2 if "live" in wanted else 0),
            )
            figures.update(
                driver_start.run(
                    ctx,
                    chargers=args.driver_chargers,
                    starts=args.driver_starts,
                    rate=args.driver_rate,
                    box=box,
                    payments=args.driver_payments,
                )
            )

        if "driver" in wanted:
            phase("driver", do_driver, 50)

        def do_live() -> None:
            from benchmarks import live_streams

            # About 55 s of set-up plus three measured windows: longer windows get a longer box.
            box = min(max(LIVE_BOX, 60.0 + 3 * args.live_seconds + 25.0), deadline - time.monotonic() - 5)
            figures.update(
                live_streams.run(
                    ctx,
                    streams=args.live_streams,
                    rate=args.live_rate,
                    publish_rate=args.live_publish_rate,
                    seconds=args.live_seconds,
                    box=box,
                )
            )

        def do_rebalance() -> None:
            from benchmarks import rebalance

            box = min(
                REBALANCE_BOX, deadline - time.monotonic() - 8 - (LIVE_BOX / 2 if "live" in wanted else 0)
            )
            figures.update(
                rebalance.run(ctx, chargers=args.rebalance_chargers, rounds=args.rebalance_rounds, box=box)
            )

        if "rebalance" in wanted:
            phase("rebalance", do_rebalance, 40)

        if "live" in wanted:
            phase("live", do_live, 60)

        def do_storm() -> None:
            # Floor and product, each about arrivals + a margin for the last boots.
            box = min(2 * (args.storm_chargers / args.storm_rate + 45), deadline - time.monotonic() - 5)
            figures.update(
                phases.storm(
                    ctx,
                    chargers=args.storm_chargers,
                    rate=args.storm_rate,
                    procs=args.generators,
                    hb_s=args.storm_hb,
                    open_timeout=args.storm_open_timeout,
                    box=box,
                )
            )

        if "storm" in wanted:
            phase("storm", do_storm, 40)

        def do_meter() -> None:
            say(
                f"  {args.clients} closed-loop clients, MeterValues (one energy sample each, stored by the "
                f"product; the floor answers without storing), {args.warmup:g} s warm-up + "
                f"{args.duration:g} s measured per run; floor and stack interleaved"
            )
            res = phases.throughput(
                ctx,
                {
                    "floor": (lambda: phases.start_floor_server(ctx, 300), False),
                    "stack": (lambda: phases.start_stack_server(ctx, "meter-server"), True),
                },
                runs=args.runs,
                n_clients=args.clients,
                procs=args.generators,
                warmup=args.warmup,
                duration=args.duration,
                box=min(150.0, deadline - time.monotonic() - 5),
                extra=["--action", "MeterValues"],
            )
            for label, key in (("floor", "meter_values_floor"), ("stack", "meter_values")):
                r = res.get(label)
                if r is None:
                    continue
                figures.update(
                    {
                        f"{key}_msgs_per_s": r["msgs_per_s"],
                        f"{key}_p50_ms": r["p50_ms"],
                        f"{key}_p99_ms": r["p99_ms"],
                        f"{key}_server_cpu": r["server_cpu"],
                    }
                )
                say(
                    f"  {label}: {r['msgs_per_s']:,} MeterValues/s, p50 {r['p50_ms']} ms, "
                    f"p99 {r['p99_ms']} ms"
                )
            if res.get("floor") and res.get("stack"):
                figures["meter_values_ratio"] = round(
                    res["stack"]["msgs_per_s"] / res["floor"]["msgs_per_s"], 3
                )
                say(f"  ratio stack/floor: {figures['meter_values_ratio']:.2f}")

        if "meter" in wanted:
            phase("meter", do_meter, 40)
    except KeyboardInterrupt as exc:
        figures["errors"].append(f"interrupted ({exc})")
    except Exception as exc:
        figures["errors"].append(f"{type(exc).__name__}: {exc}")
        traceback.print_exc(file=sys.stdout)
    finally:
        timer.cancel()
        Child.stop_all(grace=1.0)
    figures["elapsed_s"] = round(time.monotonic() - started, 1)
    figures["loadavg_end"] = [round(x, 2) for x in os.getloadavg()]
    figures["logs"] = str(log_dir)
    say(
        "\nsummary: floor {f} msgs/s, stack {s} msgs/s, ratio {r}; idle {i} connections at {k} KB each; "
        "commands p50 {c50} ms, p99 {c99} ms; driver start p50 {d50} ms, p99 {d99} ms; {ls} live streams: "
        "API p99 {lp} ms (idle {li} ms); rebalance p99 {rb} ms; storm: all Accepted after {ss} s "
        "({sf} failed, boot p99 {sb} ms), floor {fs} s (boot p99 {fb} ms); "
        "MeterValues {mv}/s, ratio {mr}".format(
            f=figures["floor_msgs_per_s"],
            s=figures["stack_msgs_per_s"],
            r=figures["ratio"],
            i=figures["idle_connections"],
            k=figures["rss_kb_per_connection"],
            c50=figures["command_p50_ms"],
            c99=figures["command_p99_ms"],
            d50=figures.get("driver_start_p50_ms"),
            d99=figures.get("driver_start_p99_ms"),
            ls=figures.get("live_streams"),
            lp=figures.get("live_streams_api_p99_ms"),
            li=figures.get("live_streams_api_idle_p99_ms"),
            rb=figures.get("rebalance_p99_ms"),
            ss=figures.get("storm_seconds"),
            sf=figures.get("storm_failed"),
            sb=figures.get("storm_boot_p99_ms"),
            fs=figures.get("storm_floor_seconds"),
            fb=figures.get("storm_floor_boot_p99_ms"),
            mv=figures.get("meter_values_msgs_per_s"),
            mr=figures.get("meter_values_ratio"),
        )
    )
    final_line(figures)
    return 0 if not figures["errors"] else 1


if __name__ == "__main__":
    sys.exit(main())
