"""Debian's headless Chromium driven over its DevTools protocol: a page opened with a login header, its console
kept, screenshots taken as arrays while a test waits for what a person would see."""

from __future__ import annotations

import base64
import io
import itertools
import json
import shutil
import subprocess
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import requests
import websocket
from conftest import free_port, require
from PIL import Image

# As tests/workers/tracking/test_tracking.py runs it, with WebGL on SwiftShader (OHIF draws with WebGL).
FLAGS = (
    "--headless", "--no-sandbox", "--disable-quic", "--no-first-run", "--disable-background-networking",
    "--disable-component-update", "--disable-sync", "--enable-unsafe-swiftshader", "--use-angle=swiftshader",
)  # fmt: skip


class PageError(RuntimeError):
    """What Chromium answered instead of a result (a screenshot asked for mid-navigation, say)."""


@dataclass
class Page:
    socket: Any
    console: list[str] = field(default_factory=list)
    _ids: Iterator[int] = field(default_factory=lambda: itertools.count(1))

    def call(self, method: str, **params: Any) -> dict[str, Any]:
        number = next(self._ids)
        self.socket.send(json.dumps({"id": number, "method": method, "params": params}))
        while True:
            message = json.loads(self.socket.recv())
            if message.get("id") == number:
                if "error" in message:
                    raise PageError(f"{method}: {message['error']}")
                return message["result"]
            if message.get("method") == "Runtime.consoleAPICalled":
                self.console.append(
                    " ".join(str(a.get("value", a.get("description", ""))) for a in message["params"]["args"])
                )

    def open(self, url: str, login: tuple[str, str]) -> None:
        token = base64.b64encode(":".join(login).encode()).decode()
        self.call("Network.setExtraHTTPHeaders", headers={"Authorization": f"Basic {token}"})
        self.call("Page.navigate", url=url)

    def evaluate(self, expression: str) -> Any:
        """The value of a JavaScript expression in the page."""
        return self.call("Runtime.evaluate", expression=expression, returnByValue=True)["result"].get("value")

    def wait_for_text(self, text: str, timeout: float) -> bool:
        """Whether `text` appears in the page's text (its SVG's too) within `timeout` seconds."""
        everything = "document.body.innerText + [...document.querySelectorAll('svg text')].map(t => t.textContent)"
        deadline = time.monotonic() + timeout
        while text not in (self.evaluate(everything) or ""):
            if time.monotonic() > deadline:
                return False
            time.sleep(1)
        return True

    def screenshot(self) -> np.ndarray:
        shot = self.call("Page.captureScreenshot", format="png")
        return np.asarray(Image.open(io.BytesIO(base64.b64decode(shot["data"]))).convert("RGB"))

    def wait_for(self, seen: Callable[[np.ndarray], bool], timeout: float) -> np.ndarray:
        """Screenshots every second until one passes `seen` (none while the page is between two documents, as
        after a redirect); the last one either way."""
        deadline = time.monotonic() + timeout
        while True:
            try:
                shot = self.screenshot()
            except PageError:
                shot = None
            if shot is not None and (seen(shot) or time.monotonic() > deadline):
                return shot
            assert time.monotonic() < deadline + 30, "no screenshot could be taken"
            time.sleep(1)


@contextmanager
def chromium(width: int = 1280, height: int = 900) -> Iterator[Page]:
    binary = shutil.which("chromium") or shutil.which("chromium-browser")
    require(binary is not None, "chromium is not installed (make viewer-tools)")
    port, profile = free_port(), tempfile.mkdtemp(prefix="chromium-")
    command = [binary, *FLAGS, f"--user-data-dir={profile}", f"--window-size={width},{height}",
               f"--remote-debugging-port={port}", "about:blank"]  # fmt: skip
    process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                targets = requests.get(f"http://127.0.0.1:{port}/json", timeout=1).json()
                break
            except requests.RequestException:
                assert process.poll() is None and time.monotonic() < deadline, "chromium did not start"
                time.sleep(0.2)
        target = next(t for t in targets if t["type"] == "page")
        socket = websocket.create_connection(target["webSocketDebuggerUrl"], suppress_origin=True, timeout=60)
        page = Page(socket)
        for domain in ("Page", "Runtime", "Network"):
            page.call(f"{domain}.enable")
        page.call("Emulation.setDeviceMetricsOverride", width=width, height=height, deviceScaleFactor=1, mobile=False)
        yield page
        socket.close()
    finally:
        process.terminate()
        process.wait(timeout=30)
        shutil.rmtree(profile, ignore_errors=True)
