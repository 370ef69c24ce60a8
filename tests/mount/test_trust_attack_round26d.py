"""Attack round 26d (mine, from round 26c's leads): vault.json's ``store`` is the vault folder's
writer's to change.

Holes
-----
1. A WRITER OF THE VAULT FOLDER SENDS HER COUCHDB CREDENTIALS, AND HER VAULT, TO HIS SERVER.
   ``vault.json`` is clear text read before any passphrase (vault/format/layout.py ``open_layout``),
   and its ``store`` says where the vault's documents live: ``{"kind": "local"}`` or ``{"kind":
   "couchdb", "url": ...}`` (store/__init__.py ``open_store``).  Whoever can write the vault folder (a
   synced cloud folder, a backup) changes a local vault's store to ``couchdb`` at his own URL: the
   next command that opens the vault (``mount``, even ``info``, before any passphrase) connects there
   with ``FUSEVAULT_COUCHDB_USER``/``_PASSWORD`` (store/couch.py), which a user who syncs with CouchDB
   keeps in her environment: he receives them as HTTP Basic credentials.  Had he served her own
   documents (he has her store.sqlite), her mount would go on writing her metadata to him.
   Fix: this device remembers, per vault folder, the store it opened it with (and the vault id), and
   refuses a vault whose vault.json names another (one line, nothing sent).
   Test: test_a_store_changed_in_vault_json_is_not_followed.
"""

from __future__ import annotations

import http.server
import json
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
from conftest import fusevault, mounted, vault  # noqa: F401


@pytest.fixture
def his_server() -> Iterator[tuple[str, list[str]]]:
    """An HTTP server of the vault folder's writer that notes every request's Authorization."""
    heard: list[str] = []

    class Listen(http.server.BaseHTTPRequestHandler):
        def _any(self) -> None:
            heard.append(f"{self.command} {self.path} {self.headers.get('Authorization')}")
            self.send_response(404)
            self.send_header("Content-Type", "application/json")
            self.end_headers()
            self.wfile.write(b'{"error": "not_found"}')

        do_GET = do_HEAD = do_PUT = do_POST = _any

        def log_message(self, *args: object) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Listen)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/hers", heard
    finally:
        server.shutdown()
        server.server_close()


def test_a_store_changed_in_vault_json_is_not_followed(vault: Path, tmp_path: Path,  # noqa: F811
                                                       his_server: tuple[str, list[str]]) -> None:
    url, heard = his_server
    mnt = tmp_path / "mnt"
    with mounted(vault, mnt):
        (mnt / "notes.txt").write_text("hers")  # this device has opened the vault
    marker = json.loads((vault / "vault.json").read_text())
    marker["store"] = {"kind": "couchdb", "url": url}  # the vault folder's writer
    (vault / "vault.json").write_text(json.dumps(marker))
    secrets = {"FUSEVAULT_COUCHDB_USER": "alice", "FUSEVAULT_COUCHDB_PASSWORD": "her-couch-secret"}
    for args in (("info", vault), ("mount", vault, mnt)):
        done = fusevault(*args, env=secrets)
        assert heard == [], heard  # nothing sent to his server, her credentials least of all
        assert done.returncode != 0, done.stdout
        assert len(done.stderr.strip().splitlines()) == 1 and "Traceback" not in done.stderr, done.stderr
        assert "vault.json" in done.stderr, done.stderr
