"""tools/localstripe_server.py: loopback only, its state in the file we name, or (--no-persist, the bench's
driver phase) in memory only."""

from __future__ import annotations

import subprocess
import sys
import time
import urllib.error
import urllib.request

import pytest

from tests.processes import ROOT, free_port

KEY = "sk_test_launcher"


def _request(url: str, method: str = "GET", data: bytes | None = None) -> int:
    req = urllib.request.Request(url, data=data, method=method, headers={"Authorization": f"Bearer {KEY}"})
    try:
        with urllib.request.urlopen(req, timeout=5) as response:
            return response.status
    except urllib.error.HTTPError as exc:
        return exc.code


def _serving(*args: str) -> tuple[subprocess.Popen, str]:
    port = free_port()
    process = subprocess.Popen(
        [sys.executable, "-m", "tools.localstripe_server", "--port", str(port), *args],
        cwd=ROOT,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 30
    while True:
        try:
            if _request(f"{url}/v1/customers?limit=1") == 200:
                return process, url
        except OSError:
            pass
        if process.poll() is not None or time.monotonic() > deadline:
            process.kill()
            pytest.fail(f"localstripe did not start (exit code {process.poll()})")
        time.sleep(0.05)


@pytest.mark.parametrize(("persist", "written"), [((), True), (("--no-persist",), False)])
def test_the_state_goes_to_the_named_file_or_nowhere(tmp_path, persist, written):
    state = tmp_path / "state.pickle"
    process, url = _serving("--state-file", str(state), *persist)
    try:
        assert _request(f"{url}/v1/customers", "POST", b"email=a%40example.com") == 200
        assert state.exists() is written
    finally:
        process.terminate()
        process.wait(timeout=10)


def test_keeping_and_not_persisting_exclude_each_other(tmp_path):
    result = subprocess.run(
        [sys.executable, "-m", "tools.localstripe_server", "--keep-state", "--no-persist"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 2 and "not allowed with" in result.stderr
