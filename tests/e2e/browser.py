"""A real headless Chromium (Debian's `chromium`) driven over the Chrome DevTools Protocol with the
`websockets` client the project already has: no Selenium or Playwright in the venv, and test tools cannot
download a browser here. Enough for the console's browser tests: navigate, run JavaScript, click, type,
wait for a condition, take a screenshot."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import itertools
import json
import os
import shutil
import subprocess
import tempfile
from pathlib import Path
from typing import Any

from websockets.asyncio.client import ClientConnection, connect

CHROMIUM = os.environ.get("CPO_CHROMIUM", "/usr/bin/chromium")
# The flags Debian's Chromium needs headless as root on a machine with a closed network.
FLAGS = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-dev-shm-usage",
    "--window-size=1400,1000",
)


class BrowserError(AssertionError):
    pass


class Page:
    """One tab of the browser."""

    def __init__(self, ws: ClientConnection) -> None:
        self.ws = ws
        self._ids = itertools.count(1)

    async def send(self, method: str, params: dict[str, Any] | None = None, timeout: float = 30.0) -> Any:
        message_id = next(self._ids)
        await self.ws.send(json.dumps({"id": message_id, "method": method, "params": params or {}}))
        async with asyncio.timeout(timeout):
            while True:
                message = json.loads(await self.ws.recv())
                if message.get("id") == message_id:
                    if "error" in message:
                        raise BrowserError(f"{method}: {message['error']}")
                    return message.get("result", {})

    async def evaluate(self, expression: str) -> Any:
        """The value of a JavaScript expression (awaited when it is a promise)."""
        result = await self.send(
            "Runtime.evaluate", {"expression": expression, "returnByValue": True, "awaitPromise": True}
        )
        if "exceptionDetails" in result:
            raise BrowserError(f"{expression}: {result['exceptionDetails']}")
        return result.get("result", {}).get("value")

    async def wait_for(self, expression: str, *, timeout: float = 20.0, what: str = "") -> Any:
        """Poll a JavaScript expression until it is truthy (bounded); returns its value."""
        deadline = asyncio.get_running_loop().time() + timeout
        value = None
        while asyncio.get_running_loop().time() < deadline:
            try:
                value = await self.evaluate(expression)
            except BrowserError:
                value = None  # the page is between two documents
            if value:
                return value
            await asyncio.sleep(0.1)
        raise BrowserError(f"{what or expression} not true within {timeout:g} s (last value {value!r})")

    async def goto(self, url: str) -> None:
        await self.send("Page.navigate", {"url": url})
        await self.wait_for(
            "document.readyState === 'complete' && "
            f"location.href.startsWith({json.dumps(url.split('?')[0])})",
            what=f"page {url} loaded",
        )

    async def loaded(self, path_prefix: str) -> None:
        """Wait for a navigation the page started (a form submitted, a link clicked) to land on a path."""
        await self.wait_for(
            f"document.readyState === 'complete' && location.pathname.startsWith({json.dumps(path_prefix)})",
            what=f"page {path_prefix} loaded",
        )

    async def text(self, selector: str) -> str | None:
        return await self.evaluate(
            f"(e => e ? e.textContent.trim() : null)(document.querySelector({json.dumps(selector)}))"
        )

    async def fill(self, selector: str, value: str) -> None:
        found = await self.evaluate(
            f"(e => {{ if (!e) return false; e.value = {json.dumps(value)}; return true; }})"
            f"(document.querySelector({json.dumps(selector)}))"
        )
        if not found:
            raise BrowserError(f"no field {selector}")

    async def click(self, selector: str) -> None:
        found = await self.evaluate(
            "(e => { if (!e) return false; e.click(); return true; })"
            f"(document.querySelector({json.dumps(selector)}))"
        )
        if not found:
            raise BrowserError(f"nothing to click at {selector}")

    async def screenshot(self, path: Path) -> Path:
        data = await self.send("Page.captureScreenshot", {"format": "png", "captureBeyondViewport": True})
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(base64.b64decode(data["data"]))
        return path


@contextlib.asynccontextmanager
async def chromium():
    """A headless Chromium with a fresh profile; yields a function that opens a new page (tab)."""
    if not Path(CHROMIUM).exists():
        raise BrowserError(f"{CHROMIUM} is missing: install Debian's chromium package (make bootstrap does)")
    profile = tempfile.mkdtemp(prefix="cpo-chromium-")
    process = subprocess.Popen(
        [CHROMIUM, *FLAGS, f"--user-data-dir={profile}", "--remote-debugging-port=0", "about:blank"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    sockets: list[ClientConnection] = []
    try:
        port_file = Path(profile) / "DevToolsActivePort"
        deadline = asyncio.get_running_loop().time() + 30
        while not (port_file.exists() and len(port_file.read_text().splitlines()) >= 2):
            if process.poll() is not None or asyncio.get_running_loop().time() > deadline:
                raise BrowserError(f"chromium did not start (exit code {process.poll()})")
            await asyncio.sleep(0.1)
        port, browser_path = port_file.read_text().splitlines()[:2]
        browser = await connect(f"ws://127.0.0.1:{port}{browser_path}", max_size=64 * 1024 * 1024)
        sockets.append(browser)
        control = Page(browser)

        async def new_page() -> Page:
            target = await control.send("Target.createTarget", {"url": "about:blank"})
            ws = await connect(
                f"ws://127.0.0.1:{port}/devtools/page/{target['targetId']}", max_size=64 * 1024 * 1024
            )
            sockets.append(ws)
            page = Page(ws)
            await page.send("Page.enable")
            await page.send(
                "Emulation.setDeviceMetricsOverride",
                {"width": 1400, "height": 1000, "deviceScaleFactor": 1, "mobile": False},
            )
            return page

        yield new_page
    finally:
        for ws in sockets:
            with contextlib.suppress(Exception):
                await ws.close()
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=5)
        shutil.rmtree(profile, ignore_errors=True)
