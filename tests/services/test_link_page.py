"""A share link opened in a real browser (headless Chromium, Debian's ``chromium``): the page the
relay serves under the link's URL decrypts with WebCrypto what the link store gives its read key.

The relay runs over a real CouchDB-protocol server (pouchdb-server) and Redis, as in
test_links.py; the browser reaches it through a recording proxy, which keeps every byte the
browser sent: the server's view of every request, to check that the key never reaches it.
Links are published with the owner's own code (capability.seal_share, content.upload), the
same calls ``fusevault link create`` makes from a mount.
"""

from __future__ import annotations

import hashlib
import os
import re
import socket
import threading
import time
import uuid
from pathlib import Path

import couchdb
import httpx
import pytest
from browser import chromium, fresh_context, headless_chromium
from conftest import running_relay

from fusevault.links import capability, content
from fusevault.links.client import LinkClient
from fusevault.relay.link_page import CSP

pytestmark = pytest.mark.skipif(chromium() is None and not os.environ.get("CI"),
                                reason="chromium is not installed (scripts/setup.sh test installs it)")


class RecordingProxy:
    """Forwards TCP connections to the relay and keeps everything the clients sent."""

    def __init__(self, upstream: str) -> None:
        host, _, port = upstream.removeprefix("http://").partition(":")
        self.upstream = (host, int(port))
        self.server = socket.create_server(("127.0.0.1", 0))
        self.url = f"http://127.0.0.1:{self.server.getsockname()[1]}"
        self.sent = bytearray()
        self.lock = threading.Lock()
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self.server.accept()
            except OSError:
                return
            upstream = socket.create_connection(self.upstream)
            threading.Thread(target=self._pump, args=(client, upstream, True), daemon=True).start()
            threading.Thread(target=self._pump, args=(upstream, client, False), daemon=True).start()

    def _pump(self, source: socket.socket, sink: socket.socket, record: bool) -> None:
        try:
            while data := source.recv(65536):
                if record:
                    with self.lock:
                        self.sent += data
                sink.sendall(data)
        except OSError:
            pass
        finally:
            for s in (source, sink):
                try:
                    s.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass

    def close(self) -> None:
        self.server.close()


@pytest.fixture(scope="module")
def service(redis_url: str, couchdb_server: str):
    """(proxy, relay process, its CouchDB database)."""
    db_url = f"{couchdb_server}/links{uuid.uuid4().hex[:8]}"
    with running_relay(redis_url, "--couchdb", db_url) as (proc, url):
        proxy = RecordingProxy(url)
        try:
            yield proxy, proc, couchdb.Server(couchdb_server)[db_url.rsplit("/", 1)[1]]
        finally:
            proxy.close()


@pytest.fixture(scope="module")
def chromium_process(tmp_path_factory):
    with headless_chromium(tmp_path_factory.mktemp("chromium")) as b:
        yield b


@pytest.fixture
def browser(chromium_process, tmp_path: Path):
    """A fresh browser context per test (nothing shared with other tests' pages but the process)."""
    with fresh_context(chromium_process, tmp_path / "downloads") as b:
        yield b


def publish(server: str, path: Path, expires_in: float | None = None) -> capability.Link:
    """What ``fusevault link create`` does for a share link, from a local file or folder."""
    keys = capability.OwnerKeys.new()
    with LinkClient(server) as client:
        item = client.create(keys.hashes(), capability.HASHINFO, expires_in)
        manifest, blocks = content.upload(client, item, keys.append, content.local_sources(path))
        body = capability.seal_share(keys, item, 1, manifest)
        client.add_version(item, keys.append, {**body, "blocks": blocks})
    return keys.share_link(server, item)


def state(browser) -> str:
    return browser.wait_for("document.body.dataset.state !== 'loading' && document.body.dataset.state")


def error_text(browser) -> str:
    return browser.evaluate("document.getElementById('error').textContent")


@pytest.fixture
def own_relay(redis_url: str, couchdb_server: str):
    """(proxy, relay process) for one test, whose log that test reads after stopping it."""
    db_url = f"{couchdb_server}/links{uuid.uuid4().hex[:8]}"
    with running_relay(redis_url, "--couchdb", db_url) as (proc, url):
        proxy = RecordingProxy(url)
        try:
            yield proxy, proc
        finally:
            proxy.close()


def test_a_file_downloads_under_its_name_and_the_key_never_reaches_the_server(own_relay, browser, tmp_path):
    proxy, relay = own_relay
    data = os.urandom(2 * content.BLOCK + 12345)  # three blocks
    source = tmp_path / "report 2026.bin"
    source.write_bytes(data)
    link = publish(proxy.url, source)
    text = link.text()

    browser.open(text)
    assert state(browser) == "done", error_text(browser)
    got = browser.downloaded("report 2026.bin")
    assert got == data
    shown = browser.evaluate("document.querySelector('tr[data-path]').dataset.sha256")
    assert shown == hashlib.sha256(data).hexdigest()

    # Nothing the browser sent holds the fragment, the link secret or the content key in any
    # encoding; the read key went, as the API wants, in the Authorization header only.
    fragment = text.partition("#")[2]
    sent = bytes(proxy.sent)
    assert b"GET /l/" + link.item.encode() + b" HTTP/1.1" in sent
    for secret in (fragment, fragment.partition(".")[2], capability.b64url(link.first),
                   capability.b64url(link.content_key), link.first.hex(), link.content_key.hex()):
        assert secret.encode() not in sent
    read_key = capability.b64url(link.read_key).encode()
    assert read_key in sent
    assert all(line.lower().startswith(b"authorization: capability read ")
               for line in sent.split(b"\r\n") if read_key in line)
    relay.terminate()
    relay.wait(10)
    log = relay.stderr.read()
    assert fragment.encode() not in log and read_key not in log


def test_a_folder_shows_its_listing_and_each_file_downloads(service, browser, tmp_path):
    proxy = service[0]
    top = tmp_path / "Holiday"
    (top / "photos").mkdir(parents=True)
    (top / "notes.txt").write_bytes(b"small file\n")
    big = os.urandom(content.BLOCK + 1)
    (top / "photos" / "beach.raw").write_bytes(big)
    (top / "link").symlink_to("notes.txt")
    link = publish(proxy.url, top)

    browser.open(link.text())
    assert state(browser) == "listing", error_text(browser)
    rows = browser.evaluate("[...document.querySelectorAll('#entries tr')].map(r => r.dataset.path)")
    assert rows == ["Holiday/link", "Holiday/notes.txt", "Holiday/photos", "Holiday/photos/beach.raw"]
    listed = browser.evaluate("document.getElementById('listing').innerText")
    assert "notes.txt" in listed and "photos/beach.raw" in listed and "link \u2192 notes.txt" in listed
    assert browser.downloads.exists() and not list(browser.downloads.iterdir())  # nothing yet

    for path, expected in (("Holiday/notes.txt", b"small file\n"), ("Holiday/photos/beach.raw", big)):
        browser.evaluate(f"document.querySelector('tr[data-path=\"{path}\"] button').click()")
        browser.wait_for(f"document.querySelector('tr[data-path=\"{path}\"]').dataset.state === 'done'")
        assert browser.downloaded(path.rpartition("/")[2]) == expected


def _flip(text: str, at: int) -> str:
    """The link with one character of its key changed."""
    head, _, key = text.partition("#r1.")
    swapped = "A" if key[at] != "A" else "B"
    return f"{head}#r1.{key[:at]}{swapped}{key[at + 1:]}"


@pytest.mark.parametrize("damage", ["secret", "verify key", "truncated", "no fragment", "drop kind"])
def test_a_wrong_fragment_shows_an_error_and_no_bytes(service, browser, tmp_path, damage):
    proxy = service[0]
    source = tmp_path / "secret.txt"
    source.write_bytes(b"not for you\n")
    text = publish(proxy.url, source).text()
    wrong = {"secret": _flip(text, 3), "verify key": _flip(text, 60), "truncated": text[:-10],
             "no fragment": text.partition("#")[0], "drop kind": text.replace("#r1.", "#a1.")}[damage]

    browser.open(wrong)
    assert state(browser) == "error"
    message = error_text(browser)
    expected = {"secret": "key does not open it", "verify key": "not what its owner published",
                "truncated": "incomplete", "no fragment": "incomplete", "drop kind": "drop box"}[damage]
    assert expected in message
    assert not browser.evaluate("document.querySelector('[data-sha256]')")
    time.sleep(1)  # a download, had one started, would be on disk by now
    assert not list(browser.downloads.iterdir())


def test_a_version_changed_on_the_server_is_refused(service, browser, tmp_path):
    proxy, _, db = service
    source = tmp_path / "plan.txt"
    source.write_bytes(b"the real plan\n")
    link = publish(proxy.url, source)
    item = db[f"user:{link.item}"]
    version = db[f"version:{item['latest']}"]
    version["protected"]["seq"] = 2  # what the owner signed was 1
    db.save(version)

    browser.open(link.text())
    assert state(browser) == "error"
    assert "not what its owner published" in error_text(browser)
    assert not list(browser.downloads.iterdir())


# A browser whose WebCrypto has no Ed25519 (Chromium before 137): importKey refuses the algorithm.
NO_ED25519 = """
const realImport = crypto.subtle.importKey.bind(crypto.subtle);
crypto.subtle.importKey = (format, key, algorithm, ...rest) =>
  (algorithm === "Ed25519" || (algorithm && algorithm.name === "Ed25519"))
    ? Promise.reject(new DOMException("Unrecognized name.", "NotSupportedError"))
    : realImport(format, key, algorithm, ...rest);
"""


def test_a_browser_that_cannot_check_the_signature_refuses(service, browser, tmp_path):
    source = tmp_path / "signed.txt"
    source.write_bytes(b"only with a signature\n")
    browser.open(publish(service[0].url, source).text(), before=NO_ED25519)
    assert state(browser) == "error"
    assert "cannot check the owner's signature" in error_text(browser)
    assert not browser.evaluate("document.querySelector('[data-sha256]')")
    assert not list(browser.downloads.iterdir())


def test_an_expired_link_says_so(service, browser, tmp_path):
    proxy = service[0]
    source = tmp_path / "brief.txt"
    source.write_bytes(b"soon gone\n")
    link = publish(proxy.url, source, expires_in=2)
    auth = {"Authorization": f"Capability read {capability.b64url(link.read_key)}"}
    expires_at = httpx.get(f"{proxy.url}/items/{link.item}", headers=auth).json()["expires_at"]
    # The store's clock (this machine's) decides.  Not asked again before the browser asks:
    # the first request after expiry gets 410 and purges the item (then it is 404, as for the command).
    while time.time() < expires_at + 0.5:
        time.sleep(0.2)

    browser.open(link.text())
    assert state(browser) == "error"
    assert error_text(browser) == "This link has expired."
    assert not list(browser.downloads.iterdir())


def test_the_page_is_static_with_a_strict_content_security_policy(service):
    proxy = service[0]
    page = httpx.get(f"{proxy.url}/l/anything")
    assert page.status_code == 200
    assert page.headers["content-security-policy"] == CSP
    policy = dict(p.strip().split(" ", 1) for p in CSP.split(";"))
    assert policy["default-src"] == "'none'"
    assert policy["script-src"] == policy["connect-src"] == policy["style-src"] == "'self'"
    assert page.headers["referrer-policy"] == "no-referrer"
    html = page.text
    # No inline script or style: every <script> has a src, no on* handlers, no style attributes.
    assert all("src=" in tag for tag in re.findall(r"<script[^>]*>", html))
    assert all(not body.strip() for body in re.findall(r"<script[^>]*>(.*?)</script>", html, re.S))
    assert not re.search(r"\son\w+=|\sstyle=|<style", html, re.I)
    assert httpx.get(f"{proxy.url}/l/other").content == page.content  # the same bytes for every link
    script = httpx.get(f"{proxy.url}/web/link.js")
    assert script.headers["content-type"].startswith("text/javascript")
    assert "eval(" not in script.text and "innerHTML" not in script.text
    assert httpx.get(f"{proxy.url}/web/link.css").headers["content-type"].startswith("text/css")
    assert httpx.get(f"{proxy.url}/web/..%2Fapp.py").status_code == 404
    assert httpx.get(f"{proxy.url}/web/link.html").status_code == 404
