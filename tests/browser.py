"""A real headless Chromium, driven through its DevTools protocol (CDP) over a WebSocket.

No Selenium or Playwright: the WebSocket is wsproto's (already installed with
Hypercorn), the browser is Debian's ``chromium``.  ``Browser.open`` loads a
page in a fresh tab with downloads saved into a folder of the test's, and
``evaluate`` runs an expression in it (with a user gesture, as a click is).
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
import socket
import subprocess
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlsplit

from wsproto import ConnectionType, WSConnection
from wsproto.events import AcceptConnection, CloseConnection, Ping, Request, TextMessage


def chromium() -> str | None:
    return shutil.which("chromium") or shutil.which("chromium-browser")


class Cdp:
    def __init__(self, ws_url: str) -> None:
        parts = urlsplit(ws_url)
        self.sock = socket.create_connection((parts.hostname, parts.port), timeout=60)
        self.ws = WSConnection(ConnectionType.CLIENT)
        self.sock.sendall(self.ws.send(Request(host=parts.netloc, target=parts.path)))
        self.next_id = 0
        self.pending: list[dict] = []
        self._text = ""
        while not any(isinstance(e, AcceptConnection) for e in self._read()):
            pass

    def _read(self) -> list:
        data = self.sock.recv(1 << 20)
        if not data:
            raise ConnectionError("the browser closed the DevTools connection")
        self.ws.receive_data(data)
        found = []
        for event in self.ws.events():
            if isinstance(event, Ping):
                self.sock.sendall(self.ws.send(event.response()))
            elif isinstance(event, CloseConnection):
                raise ConnectionError("the browser closed the DevTools connection")
            elif isinstance(event, TextMessage):
                self._text += event.data
                if event.message_finished:
                    message = json.loads(self._text)
                    self._text = ""
                    if "id" in message:  # an answer; events (no id) are not read, so not kept
                        self.pending.append(message)
            found.append(event)
        return found

    def call(self, method: str, session: str | None = None, **params) -> dict:
        self.next_id += 1
        message = {"id": self.next_id, "method": method, "params": params}
        if session:
            message["sessionId"] = session
        self.sock.sendall(self.ws.send(TextMessage(json.dumps(message))))
        while True:
            for i, answer in enumerate(self.pending):
                if answer.get("id") == self.next_id:
                    del self.pending[i]
                    if "error" in answer:
                        raise RuntimeError(f"{method}: {answer['error']}")
                    return answer["result"]
            self._read()

    def close(self) -> None:
        with contextlib.suppress(OSError):
            self.sock.close()


class Browser:
    def __init__(self, cdp: Cdp, downloads: Path, context: str | None = None) -> None:
        self.cdp = cdp
        self.downloads = downloads
        self.session: str | None = None
        self.context = {"browserContextId": context} if context else {}

    def open(self, url: str, before: str | None = None) -> None:
        """A fresh tab on ``url``; ``before`` is a script run in it ahead of the page's own."""
        target = self.cdp.call("Target.createTarget", url="about:blank", **self.context)["targetId"]
        self.session = self.cdp.call("Target.attachToTarget", targetId=target, flatten=True)["sessionId"]
        self.cdp.call("Page.enable", self.session)
        if before:
            self.cdp.call("Page.addScriptToEvaluateOnNewDocument", self.session, source=before)
        self.cdp.call("Browser.setDownloadBehavior", behavior="allow", downloadPath=str(self.downloads),
                      **self.context)
        self.cdp.call("Page.navigate", self.session, url=url)

    def evaluate(self, expression: str):
        result = self.cdp.call("Runtime.evaluate", self.session, expression=expression,
                               returnByValue=True, awaitPromise=True, userGesture=True)
        if "exceptionDetails" in result:
            raise RuntimeError(f"{expression}: {result['exceptionDetails']}")
        return result["result"].get("value")

    def wait_for(self, expression: str, timeout: float = 60) -> object:
        """Poll until ``expression`` is truthy in the page; its value."""
        deadline = time.monotonic() + timeout
        while True:
            with contextlib.suppress(RuntimeError):
                value = self.evaluate(expression)
                if value:
                    return value
            if time.monotonic() > deadline:
                page = self.evaluate("document.body.outerHTML")
                raise TimeoutError(f"the page never had {expression}: {page}")
            time.sleep(0.1)

    def downloaded(self, name: str, timeout: float = 60) -> bytes:
        """The bytes of a finished download (Chromium writes NAME.crdownload until done)."""
        deadline = time.monotonic() + timeout
        path = self.downloads / name
        while not path.exists() or any(self.downloads.glob("*.crdownload")):
            if time.monotonic() > deadline:
                raise TimeoutError(f"{name} was not downloaded: {os.listdir(self.downloads)}")
            time.sleep(0.1)
        return path.read_bytes()


@contextlib.contextmanager
def fresh_context(browser: Browser, downloads: Path) -> Iterator[Browser]:
    """A context of its own in a running browser, as an incognito window is: no tabs, cookies,
    storage or cache shared with any other, and its own download folder; closed at the end.
    Much cheaper than a browser process each (seconds per test)."""
    downloads.mkdir(parents=True)
    context = browser.cdp.call("Target.createBrowserContext")["browserContextId"]
    try:
        yield Browser(browser.cdp, downloads, context)
    finally:
        browser.cdp.call("Target.disposeBrowserContext", browserContextId=context)


@contextlib.contextmanager
def headless_chromium(workdir: Path) -> Iterator[Browser]:
    """A headless Chromium with its own profile and download folder; always stopped."""
    binary = chromium()
    assert binary, "chromium is not installed (apt-get install chromium)"
    downloads = workdir / "downloads"
    downloads.mkdir(parents=True)
    args = [binary, "--headless=new", "--remote-debugging-port=0", f"--user-data-dir={workdir / 'profile'}",
            "--no-first-run", "--no-default-browser-check", "--disable-gpu", "--disable-dev-shm-usage",
            "--disable-extensions", "--disable-background-networking", "--disable-sync", "about:blank"]
    if os.geteuid() == 0:
        args.insert(1, "--no-sandbox")  # Chromium's sandbox refuses to run as root
    proc = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    try:
        ws_url = None
        deadline = time.monotonic() + 60
        for line in proc.stderr:
            found = re.search(r"DevTools listening on (ws://\S+)", line)
            if found:
                ws_url = found.group(1)
                break
            if time.monotonic() > deadline:
                break
        assert ws_url, "chromium did not start its DevTools endpoint"
        # Keep reading its stderr so that the browser never blocks on a full pipe.
        threading.Thread(target=lambda: [None for _ in proc.stderr], daemon=True).start()
        cdp = Cdp(ws_url)
        try:
            yield Browser(cdp, downloads)
        finally:
            cdp.close()
    finally:
        proc.kill()
        proc.wait(10)
