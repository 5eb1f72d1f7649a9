"""Process plumbing shared by the phases: loopback-only addresses, child processes that always die with
the bench, line protocol with the client processes, RSS, percentiles."""

from __future__ import annotations

import contextlib
import ipaddress
import json
import os
import queue
import resource
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

ROOT = Path(__file__).resolve().parent.parent
PY = sys.executable
HOST = "127.0.0.1"

# Runs first in every child: die with the bench (PR_SET_PDEATHSIG survives exec), then exec the command.
_LAUNCHER = (
    "import ctypes, os, signal, sys\n"
    "ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGKILL)\n"
    "if os.getppid() != int(sys.argv[1]): sys.exit(3)\n"
    "os.execvp(sys.argv[2], sys.argv[2:])\n"
)


def is_loopback_host(host: str | None) -> bool:
    if not host:
        return False
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def require_loopback_url(name: str, url: str) -> None:
    host = urlsplit(url).hostname
    if not is_loopback_host(host):
        raise SystemExit(f"benchmarks: {name} must point at a loopback address, got host {host!r}")


def raise_fd_limit() -> int:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    target = hard if hard != resource.RLIM_INFINITY else 65536
    if soft < target:
        resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
    return resource.getrlimit(resource.RLIMIT_NOFILE)[0]


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((HOST, 0))
        return s.getsockname()[1]


def rss_kb(pid: int) -> int | None:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    except OSError:
        return None
    return None


def cpu_seconds(pid: int) -> float | None:
    """utime + stime of a process, in seconds (from /proc/<pid>/stat)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    except (OSError, IndexError, ValueError):
        return None


def cpu_seconds_by_name(names: Sequence[str]) -> dict[str, float]:
    """utime + stime summed over every process whose command name is one of `names` (e.g. the
    PostgreSQL backends, Redis), in seconds."""
    out = dict.fromkeys(names, 0.0)
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        name = stat[stat.find("(") + 1 : stat.rfind(")")]
        if name in out:
            fields = stat.rsplit(")", 1)[1].split()
            out[name] += (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    return out


def machine_cpu() -> list[int] | None:
    """The machine's CPU time counters (/proc/stat "cpu" line: user nice system idle iowait irq softirq
    steal ...), in clock ticks; see machine_cpu_share."""
    try:
        return [int(x) for x in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    except (OSError, ValueError):
        return None


def machine_cpu_share(before: list[int] | None, after: list[int] | None) -> dict[str, float] | None:
    """How the machine's CPUs spent an interval: busy (user+system+irq), idle, steal (taken by the host
    for other guests: on a shared machine it says how much of the wall clock was not ours)."""
    if not before or not after:
        return None
    d = [b - a for a, b in zip(before, after, strict=False)]
    total = sum(d[:8]) or 1
    return {
        "busy": round((d[0] + d[1] + d[2] + d[5] + d[6]) / total, 2),
        "idle": round((d[3] + d[4]) / total, 2),
        "steal": round(d[7] / total, 2) if len(d) > 7 else 0.0,
    }


def percentile(values: Sequence[float], p: float) -> float | None:
    if not values:
        return None
    ordered = sorted(values)
    k = max(0, min(len(ordered) - 1, round(p / 100 * (len(ordered) - 1))))
    return ordered[k]


def r1(value: float | None, digits: int = 1) -> float | None:
    return None if value is None else round(value, digits)


def say(text: str) -> None:
    print(text, flush=True)


class ChildFailed(RuntimeError):
    pass


class Child:
    """A child process in its own process group that dies with the bench. Lines its stdout prints as
    `KIND {json}` are queued for `expect`; everything else goes to its log file."""

    registry: list[Child] = []
    _lock = threading.Lock()

    def __init__(
        self, name: str, argv: list[str], *, env: dict[str, str], log_dir: Path, stdin: bool = False
    ) -> None:
        self.name = name
        self.log_path = log_dir / f"{name}.log"
        self._log = open(self.log_path, "a", buffering=1)  # noqa: SIM115 - closed in stop()
        self.lines: queue.Queue[tuple[str, Any]] = queue.Queue()
        with Child._lock:
            self.proc = subprocess.Popen(  # noqa: S603 - argv built by the bench itself
                [PY, "-c", _LAUNCHER, str(os.getpid()), *argv],
                cwd=ROOT,
                env=env,
                stdin=subprocess.PIPE if stdin else subprocess.DEVNULL,
                stdout=subprocess.PIPE,
                stderr=self._log,
                text=True,
                bufsize=1,
                start_new_session=True,
            )
            Child.registry.append(self)
        self.pid = self.proc.pid
        self._reader = threading.Thread(target=self._read, name=f"read-{name}", daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            kind, _, rest = line.strip().partition(" ")
            if kind.isupper() and rest.startswith("{"):
                try:
                    self.lines.put((kind, json.loads(rest)))
                    continue
                except ValueError:
                    pass
            try:
                self._log.write(line)
            except ValueError:
                return
        self.lines.put(("EOF", {}))

    def send(self, line: str) -> None:
        if self.proc.stdin is None or self.proc.poll() is not None:
            return
        try:
            self.proc.stdin.write(line + "\n")
            self.proc.stdin.flush()
        except (BrokenPipeError, ValueError, OSError):
            pass

    def expect(self, kind: str, timeout: float, *, on_other: Any = None) -> dict[str, Any]:
        """The next `kind` line's JSON; other kinds go to `on_other(kind, data)`.
        ChildFailed on timeout or exit."""
        deadline = time.monotonic() + timeout
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise ChildFailed(f"{self.name}: no {kind} within {timeout:.0f} s (log: {self.log_path})")
            try:
                got, data = self.lines.get(timeout=min(remaining, 1.0))
            except queue.Empty:
                continue
            if got == kind:
                return data
            if got == "EOF":
                raise ChildFailed(
                    f"{self.name}: exited ({self.proc.poll()}) before {kind} (log: {self.log_path})"
                )
            if on_other is not None:
                on_other(got, data)

    def alive(self) -> bool:
        return self.proc.poll() is None

    def stop(self, grace: float = 3.0) -> None:
        """SIGTERM to the process group, SIGKILL after `grace` seconds."""
        if self.proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.pid, signal.SIGTERM)
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.proc.wait(timeout=grace)
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self.pid, signal.SIGKILL)  # stragglers in the group, if any
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.proc.wait(timeout=5)
        for stream in (self.proc.stdin,):
            try:
                if stream:
                    stream.close()
            except OSError:
                pass
        with Child._lock:
            if self in Child.registry:
                Child.registry.remove(self)

    @classmethod
    def stop_all(cls, grace: float = 2.0) -> None:
        for child in list(cls.registry):
            with contextlib.suppress(Exception):
                child.stop(grace)


def wait_port(port: int, timeout: float, child: Child | None = None) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if child is not None and not child.alive():
            raise ChildFailed(f"{child.name} exited before listening (log: {child.log_path})")
        try:
            with socket.create_connection((HOST, port), timeout=0.5):
                return
        except OSError:
            time.sleep(0.1)
    raise ChildFailed(f"nothing listens on {HOST}:{port} after {timeout:.0f} s")
