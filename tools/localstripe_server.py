"""Run localstripe (a fake, stateful Stripe server for tests and the demo) on loopback only, with its state
in a file of our choosing.

localstripe's own entry point listens on every interface ("::") and keeps its state in the fixed file
/tmp/localstripe.pickle (hard-coded, whatever TMPDIR says), so two instances on one machine (parallel test
runs, `make run` next to a test run, another user's) would read and overwrite each other's state, or fail
to write a file another user owns. This launcher binds 127.0.0.1:PORT and points the store at STATE_FILE
(default: localstripe.pickle in TMPDIR), starting from scratch unless --keep-state is given.

localstripe writes its whole store to that file after every change, which makes each write slower the
more objects it holds; --no-persist keeps the state in memory only (the benchmark's driver phase, which
makes a hold per start and measures the start's latency, not localstripe's pickling).

    python -m tools.localstripe_server --port 8420 [--state-file PATH] [--keep-state | --no-persist]
"""

from __future__ import annotations

import argparse
import logging
import os
import pickle
import socket
import tempfile
from pathlib import Path

from aiohttp import web
from localstripe import resources, server


def _in_memory_only() -> None:
    def nothing(self: resources.Store) -> None:
        return None

    resources.Store.try_load_from_disk = nothing  # type: ignore[method-assign]
    resources.Store.dump_to_disk = nothing  # type: ignore[method-assign]


def _use_state_file(path: Path) -> None:
    def try_load_from_disk(self: resources.Store) -> None:
        try:
            with path.open("rb") as f:
                old = pickle.load(f)  # noqa: S301 - our own state file, written below
        except FileNotFoundError:
            return
        self.clear()
        self.update(old)

    def dump_to_disk(self: resources.Store) -> None:
        tmp = path.with_name(path.name + ".tmp")
        with tmp.open("wb") as f:
            pickle.dump(self, f, protocol=pickle.HIGHEST_PROTOCOL)
        os.replace(tmp, path)

    resources.Store.try_load_from_disk = try_load_from_disk  # type: ignore[method-assign]
    resources.Store.dump_to_disk = dump_to_disk  # type: ignore[method-assign]


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8420)
    parser.add_argument("--state-file", type=Path, default=Path(tempfile.gettempdir()) / "localstripe.pickle")
    keep = parser.add_mutually_exclusive_group()
    keep.add_argument("--keep-state", action="store_true", help="load the state file's data first")
    keep.add_argument("--no-persist", action="store_true", help="keep the state in memory only")
    args = parser.parse_args(argv)

    if args.no_persist:
        _in_memory_only()
    else:
        _use_state_file(args.state_file)
    if args.keep_state:
        server.store.try_load_from_disk()

    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((args.host, args.port))
    access = logging.getLogger("aiohttp.access")
    access.setLevel(logging.INFO)
    access.addHandler(logging.StreamHandler())
    web.run_app(server.app, sock=sock, access_log=access, print=None)


if __name__ == "__main__":
    main()
