"""JSON nested too deep to parse, sent by a client of the relay or by a sync server: refused, and
the service goes on (``encoding.loads_untrusted``; the store at mount: tests/mount/test_hostile_json.py)."""

from __future__ import annotations

from pathlib import Path

import httpx
from conftest import (
    first_device,
    fusevault,
    mounted,
    new_device,
    running_relay,
    settled,
    sync_status,
    wait_for,
)

from fusevault.transfer import crypto
from fusevault.transfer.client import RelayClient

# Far deeper than Python's json can parse (RecursionError), far under every size cap.
DEEP = b"[" * 100_000 + b"]" * 100_000


def test_a_request_nested_too_deep_is_a_bad_request_and_the_relay_answers_the_next(redis_url: str) -> None:
    with running_relay(redis_url) as (proc, url):
        for path in ("/sessions", "/sessions/join"):
            answer = httpx.post(url + path, content=b'{"name": ' + DEEP + b"}", timeout=30,
                                headers={"content-type": "application/json"})
            assert answer.status_code == 400, (path, answer.status_code, answer.text[:200])
            # Refused before it is parsed (its brackets counted: round 71b (1)), or by the parser.
            error = answer.json()["error"]
            assert "more values than" in error or "not JSON" in error, error
        with RelayClient(url) as client:
            assert client.open_session(crypto.new_salt(), [{"id": "0", "size": 1}])["token"]
        assert proc.poll() is None


def test_a_document_nested_too_deep_on_the_sync_server_is_left_out_and_sync_carries_on(
        couchdb_url: str, tmp_path: Path) -> None:
    laptop = first_device(couchdb_url, tmp_path)
    with mounted(laptop, tmp_path / "laptop-mnt") as mnt:
        (mnt / "before.txt").write_text("before\n")
        wait_for(lambda: settled(mnt), "the laptop to push")
    # The server (or anyone who can write its database) adds a document no parser can take
    # (1500 deep: deeper than Python's json goes, within what pouchdb-server stores).
    forged = httpx.put(f"{couchdb_url}/forged", timeout=30, headers={"content-type": "application/json"},
                       content=b'{"type": "node", "x": ' + b"[" * 1500 + b"]" * 1500 + b"}")
    assert len(httpx.get(f"{couchdb_url}/forged").content) > 3000  # stored as sent
    assert forged.status_code in (201, 202), forged.text
    phone = new_device(couchdb_url, tmp_path, "phone")  # joins: pulls everything, the forgery too
    with mounted(phone, tmp_path / "phone-mnt") as mnt:
        assert (mnt / "before.txt").read_text() == "before\n"
        (mnt / "after.txt").write_text("after\n")
        wait_for(lambda: settled(mnt), lambda: f"the phone to push: {sync_status(mnt)}")
    with mounted(laptop, tmp_path / "laptop-mnt") as mnt:
        wait_for(lambda: (mnt / "after.txt").exists(), lambda: f"after.txt to arrive: {sync_status(mnt)}")
        assert (mnt / "after.txt").read_text() == "after\n"
        wait_for(lambda: settled(mnt), lambda: f"the laptop to settle: {sync_status(mnt)}")
        assert sync_status(mnt)["error"] is None
    assert fusevault("check", laptop).returncode == 0
