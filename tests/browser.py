"""Headless Chromium driven over the DevTools protocol (websocket-client): one page, every network request it and its
workers make recorded, with every host but this machine unresolvable. Used by tests/test_map_viewer.py and
scripts/screenshots.py."""

from __future__ import annotations

import base64
import itertools
import json
import socket
import subprocess
import time
import urllib.request
from pathlib import Path
from typing import Any

import websocket

from system_tools import chromium

#: WebGL on the CPU (SwiftShader) for MapLibre; no host but this machine resolves
FLAGS = ["--headless", "--no-sandbox", "--use-angle=swiftshader", "--enable-unsafe-swiftshader", "--disable-quic",
         "--no-first-run", "--disable-background-networking", "--disable-component-update", "--disable-sync",
         "--force-color-profile=srgb", "--hide-scrollbars", "--host-resolver-rules=MAP * ~NOTFOUND, EXCLUDE 127.0.0.1"]


class BrowserError(AssertionError):
    """The page did not get where it was asked to in time, or a script failed."""


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


class Browser:
    """One headless Chromium page. `requests` lists the URL of every request the page and its workers sent, `errors`
    the scripts' uncaught exceptions."""

    def __init__(self, profile: Path, width: int = 1400, height: int = 900) -> None:
        port = _free_port()
        self.process = subprocess.Popen([chromium(), *FLAGS, f"--remote-debugging-port={port}", f"--user-data-dir={profile}",
                                         f"--window-size={width},{height}", "about:blank"],
                                        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        self.requests: list[str] = []
        self.errors: list[str] = []
        self._ids = itertools.count(1)
        try:
            self._socket = websocket.create_connection(self._page_socket(port), timeout=60, suppress_origin=True)
            self.send("Target.setAutoAttach", autoAttach=True, waitForDebuggerOnStart=False, flatten=True)
            for domain in ("Page", "Runtime", "Network"):
                self.send(f"{domain}.enable")
            self.send("Emulation.setDeviceMetricsOverride", width=width, height=height, deviceScaleFactor=1, mobile=False)
        except Exception:
            self.close()
            raise

    def _page_socket(self, port: int) -> str:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/json/list", timeout=2) as answer:
                    pages = [t for t in json.load(answer) if t["type"] == "page"]
                if pages:
                    return pages[0]["webSocketDebuggerUrl"]
            except OSError:
                pass
            time.sleep(0.2)
        raise BrowserError("Chromium's DevTools endpoint did not answer within 30 s")

    def _handle(self, message: dict[str, Any]) -> None:
        """An event: record requests; let each worker attached report its own requests too."""
        method, params = message.get("method"), message.get("params", {})
        if method == "Network.requestWillBeSent":
            self.requests.append(params["request"]["url"])
        elif method == "Runtime.exceptionThrown":
            details = params["exceptionDetails"]
            self.errors.append(details.get("exception", {}).get("description") or details.get("text", ""))
        elif method == "Target.attachedToTarget":
            session = params["sessionId"]
            for command in ("Network.enable", "Runtime.runIfWaitingForDebugger"):
                self._socket.send(json.dumps({"id": next(self._ids), "method": command, "sessionId": session}))

    def send(self, method: str, **params: Any) -> dict[str, Any]:
        """A command to the page; its result (events that arrive meanwhile are handled)."""
        call = next(self._ids)
        self._socket.send(json.dumps({"id": call, "method": method, "params": params}))
        while True:
            message = json.loads(self._socket.recv())
            if message.get("id") == call and "sessionId" not in message:
                if "error" in message:
                    raise BrowserError(f"{method}: {message['error']}")
                return message.get("result", {})
            self._handle(message)

    def evaluate(self, expression: str) -> Any:
        """The value of a script in the page (promises awaited)."""
        result = self.send("Runtime.evaluate", expression=expression, awaitPromise=True, returnByValue=True)
        if "exceptionDetails" in result:
            raise BrowserError(f"{expression[:80]}: {result['exceptionDetails'].get('exception', {}).get('description')}")
        return result["result"].get("value")

    def wait_for(self, expression: str, timeout: float = 60) -> Any:
        """Poll a script until its value is truthy; that value."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            value = self.evaluate(expression)
            if value:
                return value
            time.sleep(0.2)
        raise BrowserError(f"not true within {timeout} s: {expression}")

    def goto(self, url: str) -> None:
        self.send("Page.navigate", url=url)
        time.sleep(0.3)
        self.wait_for("document.readyState === 'complete' && location.href !== 'about:blank'")

    def click(self, x: float, y: float) -> None:
        for kind in ("mousePressed", "mouseReleased"):
            self.send("Input.dispatchMouseEvent", type=kind, x=x, y=y, button="left", clickCount=1)

    def drag(self, start: tuple[float, float], end: tuple[float, float], steps: int = 8) -> None:
        """Press the left button at `start`, move to `end` in `steps`, release."""
        self.send("Input.dispatchMouseEvent", type="mousePressed", x=start[0], y=start[1], button="left", buttons=1, clickCount=1)
        for step in range(1, steps + 1):
            x, y = (a + (b - a) * step / steps for a, b in zip(start, end, strict=True))
            self.send("Input.dispatchMouseEvent", type="mouseMoved", x=x, y=y, button="left", buttons=1)
        self.send("Input.dispatchMouseEvent", type="mouseReleased", x=end[0], y=end[1], button="left", buttons=0, clickCount=1)

    def set_files(self, selector: str, paths: list[Path]) -> None:
        """Choose `paths` in the file input `selector` (as a person choosing them would: its change event fires)."""
        root = self.send("DOM.getDocument")["root"]["nodeId"]
        node = self.send("DOM.querySelector", nodeId=root, selector=selector)["nodeId"]
        if not node:
            raise BrowserError(f"no element {selector}")
        self.send("DOM.setFileInputFiles", files=[str(path) for path in paths], nodeId=node)

    def screenshot(self, clip: dict[str, float] | None = None) -> bytes:
        """A PNG of the page (or of the rectangle `clip`: x, y, width, height)."""
        params: dict[str, Any] = {"format": "png"}
        if clip:
            params["clip"] = {**clip, "scale": 1}
        return base64.b64decode(self.send("Page.captureScreenshot", **params)["data"])

    def close(self) -> None:
        if getattr(self, "_socket", None) is not None:
            self._socket.close()
        self.process.terminate()
        try:
            self.process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.process.kill()

    def __enter__(self) -> Browser:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
