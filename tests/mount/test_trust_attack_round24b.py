"""Attack round 24b: DOCSTRING (filled in below)."""

from __future__ import annotations

import hashlib
import json
import os
import pty
import re
import select
import subprocess
import sys
import time
import uuid
from pathlib import Path

import adversary
import pytest
import redis
from conftest import fusevault, mounted, running_relay
from transfer_helpers import receive

from fusevault.crypto import aead
from fusevault.encoding import b64e
from fusevault.errors import VaultError
from fusevault.links import capability, content
from fusevault.links.client import LinkClient


@pytest.fixture(scope="module")
def relay(redis_url: str, couchdb_server: str):
    """A relay with its link store (one process for the module)."""
    with running_relay(redis_url, "--couchdb", f"{couchdb_server}/links{uuid.uuid4().hex[:8]}") as (_, url):
        yield url


def _drop(drop: str, tmp_path: Path, edit) -> None:
    """What anyone holding the drop link sends: his own file, its manifest edited by ``edit``."""
    link = capability.parse(drop)
    (tmp_path / "junk.txt").write_text("junk\n")
    with LinkClient(link.server) as client:
        manifest, blocks = content.upload(client, link.item, link.first,
                                          content.local_sources(tmp_path / "junk.txt"))
        manifest = edit(manifest)
        client.add_version(link.item, link.first, {**capability.seal_drop(link, manifest), "blocks": blocks})


def _collect_thrice(relay: str, vault: Path, tmp_path: Path, edit) -> tuple[list[str], dict]:
    with mounted(vault, tmp_path / "mnt") as mnt:
        drop = fusevault("link", "create", mnt / "Inbox", "--append", "--relay", relay).stdout.strip()
        _drop(drop, tmp_path, edit)
        runs = [fusevault("link", "collect", cwd=mnt) for _ in range(3)]
        link = capability.parse(drop)
        [record] = [r for r in json.loads(fusevault("link", "list", "--json", cwd=mnt).stdout)
                    if r["item"] == link.item] or [{}]
    return [r.stdout + r.stderr for r in runs], record


# --- hole 1: a dropped item whose entry lacks a field only writing uses, or whose symlink target is
# no file name, stays on the server, fetched again at every run


def _without(field: str):
    def edit(manifest: dict) -> dict:
        entry = {k: v for k, v in manifest["entries"][0].items() if k != field}
        return {**manifest, "entries": [entry]}
    return edit


def _symlink_to(target: str):
    def edit(manifest: dict) -> dict:
        entry = manifest["entries"][0]
        link = {"path": entry["path"], "type": "symlink", "mode": 0o777, "mtime_ns": entry["mtime_ns"],
                "target": target}
        return {**manifest, "entries": [link]}
    return edit


@pytest.mark.xfail(strict=True, reason="hole 1: content.entries does not check size/sha256 of a file "
                   "entry nor that a symlink target is a name: a KeyError/UnicodeEncodeError keeps the "
                   "dropped item on the server for good")
@pytest.mark.parametrize("edit", [_without("size"), _without("sha256"), _symlink_to("x\ud800")],
                         ids=["no-size", "no-sha256", "symlink-target-lone-surrogate"])
def test_a_dropped_item_missing_a_field_is_discarded_not_fetched_again_at_every_run(
        relay: str, vault: Path, tmp_path: Path, edit) -> None:
    said, record = _collect_thrice(relay, vault, tmp_path, edit)
    assert "internal error" not in said[1] + said[2], (
        f"the stranger's item is neither taken nor discarded: every collect meets it "
        f"again: {said!r}; the server still holds {record.get('versions', record)}")


# --- hole 2: defused() keeps the newline: a name from outside still writes whole lines of its own


FORGED = "\nfusevault: wrong passphrase"


@pytest.mark.xfail(strict=True, reason="hole 2: `user list` prints a store writer's user name through "
                   "defused() only, which keeps newlines: he writes a line of his own on her terminal")
def test_a_store_writers_username_does_not_write_a_line_of_its_own_to_her_terminal(vault: Path) -> None:
    [her] = adversary.docs(vault, "UserDetails")
    adversary.put(vault, {**her, "_id": "u-planted", "username": "mallory" + FORGED, "uid": 4242})
    users = fusevault("user", "list", "--vault", vault, passphrase=None)
    assert "mallory" in users.stdout, users.stdout + users.stderr
    assert FORGED not in users.stdout, f"a planted name wrote a line of its own: {users.stdout!r}"


@pytest.mark.xfail(strict=True, reason="hole 2: `trash` prints a dropped name through defused() only, "
                   "which keeps newlines: a stranger's name writes a trash line of its own")
def test_a_dropped_name_does_not_write_a_line_of_its_own_to_her_terminal_from_the_trash(
        relay: str, vault: Path, tmp_path: Path) -> None:
    # A dropped name holds any byte but "/" and NUL: a second trash line of his, her thesis "deleted".
    name = "invoice\n2026-12-01 09:12:44 UTC     1.2 MiB  thesis-final.pdf"
    with mounted(vault, tmp_path / "mnt") as mnt:
        drop = fusevault("link", "create", mnt / "Inbox", "--append", "--relay", relay).stdout.strip()
        _drop(drop, tmp_path, lambda m: {**m, "name": name, "entries": [{**m["entries"][0], "path": name}]})
        collected = fusevault("link", "collect", cwd=mnt)
        assert "took in 1" in collected.stdout, collected.stdout + collected.stderr
        [arrived] = os.listdir(mnt / "Inbox")
        os.unlink(mnt / "Inbox" / arrived)  # she throws the junk away
        trash = fusevault("trash", mnt, passphrase=None)
    assert "invoice" in trash.stdout, trash.stdout + trash.stderr
    assert "\n2026-12-01 09:12:44 UTC" not in trash.stdout, (
        f"`trash` printed a line the dropper wrote: her thesis seems deleted: {trash.stdout!r}")


FAKE_LOG = "2026-12-04 09:00:00,000 ERROR fusevault.trust: FORGED"


@pytest.mark.xfail(strict=True, reason="hole 2: the importer's task error and log line hold the watched "
                   "file's name through defused() only, which keeps newlines: a scanner writes a line "
                   "of his own into `status` and into her mount's log")
def test_a_watched_file_name_does_not_write_a_line_of_its_own_to_status_or_her_log(
        vault: Path, tmp_path: Path) -> None:
    from mount.test_imports import watch

    from fusevault import paths

    inbox = tmp_path / "inbox"
    inbox.mkdir()
    with mounted(vault, tmp_path / "mnt") as mnt:
        watch(mnt, inbox, settle=0.3)
        # The scanner (round 23b hole 9's way to make an import fail): a file "a", imported; then
        # a folder "a" in its place holding a file whose name holds a newline and a log line.
        (inbox / "a").write_text("one\n")
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline and not (mnt / "Imported" / "a").exists():
            time.sleep(0.2)
        (inbox / "a").unlink()
        (inbox / "a").mkdir()
        (inbox / "a" / ("scan\n" + FAKE_LOG)).write_text("two\n")
        deadline = time.monotonic() + 10
        while True:
            status = fusevault("status", cwd=mnt)
            if "last error" in status.stdout or time.monotonic() > deadline:
                break
            time.sleep(0.3)
        logs = "".join(p.read_text(errors="replace") for p in (paths.state_dir() / "logs").glob("mount-*.log"))
    assert "last error" in status.stdout, status.stdout
    forged_status = "\n" + FAKE_LOG in status.stdout
    forged_log = "\n" + FAKE_LOG in logs
    assert not forged_status and not forged_log, (
        f"the scanner's file name wrote a line of its own: in status {forged_status}, in her mount's "
        f"log {forged_log}: {[line for line in logs.splitlines() if 'FORGED' in line]!r}")


# --- hole 3: `fusevault send` shows a file's name raw in its progress bar


@pytest.fixture
def transfer_relay(redis_url: str):
    client = redis.Redis.from_url(redis_url)
    client.flushall()
    client.close()
    with running_relay(redis_url) as (_, url):
        yield url


OSC52 = "\x1b]52;c;ZWNobyBvd25lZA==\x1b\\\x1b[2K\x1b[1A"  # ST, not BEL: rich drops BEL, not ESC


@pytest.mark.xfail(strict=True, reason="hole 3: send.py:255 puts file.name in the progress bar without "
                   "shown(); rich writes ESC through to her terminal")
def test_a_received_name_sent_on_does_not_write_control_sequences_to_her_terminal(
        transfer_relay: str, tmp_path: Path) -> None:
    # A name a sender gave (receive and link get write any name but "/" and NUL), in her Downloads;
    # she sends the folder on to a friend, on a terminal.
    downloads = tmp_path / "Downloads"
    downloads.mkdir()
    (downloads / ("invoice" + OSC52 + ".pdf")).write_bytes(os.urandom(3 << 20))
    master, slave = pty.openpty()
    proc = subprocess.Popen([sys.executable, "-m", "fusevault", "send", str(downloads), "--relay",
                             transfer_relay], stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                            stderr=slave, text=True, env={**os.environ, "COLUMNS": "300"})
    os.close(slave)
    try:
        found = re.match(r"Session (\d+), code (\S+)", proc.stdout.readline())
        assert found
        got = receive(transfer_relay, found.group(1), found.group(2), tmp_path / "friend")
        assert got.returncode == 0, got.stderr
        assert proc.wait(60) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        proc.stdout.close()
    seen = b""
    while select.select([master], [], [], 0.5)[0]:
        try:
            chunk = os.read(master, 65536)
        except OSError:
            break
        if not chunk:
            break
        seen += chunk
    os.close(master)
    assert b"sending" in seen, seen
    assert b"\x1b]52" not in seen, f"`send` wrote the name's OSC 52 to her terminal: {seen[-400:]!r}"


# --- hole 4: a dropped item naming a block of another link stops the whole box at every run


@pytest.mark.xfail(strict=True, reason="hole 4: owner._held turns LinkGone/InvalidInput into CorruptData, "
                   "not LinkRefused (403 'this read key does not open this block'): the VaultError "
                   "stops the box at every run, the items after it never arrive")
def test_a_dropped_item_naming_another_links_block_does_not_stop_the_box(
        relay: str, vault: Path, tmp_path: Path) -> None:
    with mounted(vault, tmp_path / "mnt") as mnt:
        drop = fusevault("link", "create", mnt / "Inbox", "--append", "--relay", relay).stdout.strip()
        # Any link item the stranger may add blocks to (one of his own; here a second box).
        other = capability.parse(
            fusevault("link", "create", mnt / "Other", "--append", "--relay", relay).stdout.strip())
        link = capability.parse(drop)
        (tmp_path / "junk.txt").write_text("junk\n")
        with LinkClient(link.server) as client:
            _, foreign = content.upload(client, other.item, other.first,
                                        content.local_sources(tmp_path / "junk.txt"))
            manifest, blocks = content.upload(client, link.item, link.first,
                                              content.local_sources(tmp_path / "junk.txt"))
            # His manifest (sealed: the store cannot see it) names the other link's block.
            manifest = {**manifest, "entries": [{**manifest["entries"][0], "blocks": foreign}]}
            client.add_version(link.item, link.first, {**capability.seal_drop(link, manifest), "blocks": []})
        # Then a friend drops her invoice.
        (tmp_path / "invoice.txt").write_text("pay me\n")
        dropped = fusevault("link", "push", tmp_path / "invoice.txt", drop, passphrase=None)
        assert dropped.returncode == 0, dropped.stderr
        runs = [fusevault("link", "collect", cwd=mnt) for _ in range(2)]
        arrived = os.listdir(mnt / "Inbox")
    said = [r.stdout + r.stderr for r in runs]
    assert "invoice.txt" in arrived, (
        f"one stranger's item stops the box: the friend's invoice never arrives: {said!r}")


# --- hole 5: `link get --overwrite` of a link's new version writes through the symlink its old one made


class _Blocks:
    """What a link store serves for a manifest the link's owner made (as round 23b's)."""

    def __init__(self, dek: bytes, item: str, files: dict[int, bytes]) -> None:
        self.sealed = {f"b{i}": capability.seal_block(dek, item, i, 0, data) for i, data in files.items()}

    def block(self, block_id: str, read_key: bytes) -> bytes:
        return self.sealed[block_id]


@pytest.mark.xfail(strict=True, reason="hole 5: write_local checks inside(dest, target.parent), not inside "
                   "the top, and follows a symlink on disk: version 1's photos/l -> ../.ssh, version 2's "
                   "photos/l/authorized_keys lands in her ~/.ssh")
def test_link_get_overwrite_does_not_write_through_the_symlink_an_older_version_made(tmp_path: Path) -> None:
    home = tmp_path / "home"
    (home / ".ssh").mkdir(parents=True, mode=0o700)
    (home / ".ssh" / "authorized_keys").write_text("ssh-ed25519 AAAA her own key\n")
    key = b"ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIHNlbmRlcidzIGtleQ the link's owner\n"
    dek = aead.new_key()
    # Version 1: a folder "photos" (new at her home) holding a symlink "l" -> "../.ssh" (a link makes
    # any symlink it lists: only what lies under it in the same list is refused).
    v1 = {"name": "photos", "key": b64e(dek), "entries": [
        {"path": "photos", "type": "dir", "mode": 0o755, "mtime_ns": 0},
        {"path": "photos/l", "type": "symlink", "mode": 0o777, "mtime_ns": 0, "target": "../.ssh"},
    ]}
    content.write_local(_Blocks(dek, "item", {}), b"r" * 32, "item", v1, home)  # type: ignore[arg-type]
    # Version 2 (the owner's next push): "photos/l/authorized_keys", no symlink in its own list.
    v2 = {"name": "photos", "key": b64e(dek), "entries": [
        {"path": "photos", "type": "dir", "mode": 0o755, "mtime_ns": 0},
        {"path": "photos/l/authorized_keys", "type": "file", "mode": 0o600, "mtime_ns": 0,
         "size": len(key), "sha256": hashlib.sha256(key).hexdigest(), "blocks": ["b1"]},
    ]}
    try:  # she refreshes her copy: `fusevault link get LINK --overwrite`, at home
        content.write_local(_Blocks(dek, "item", {1: key}), b"r" * 32, "item", v2, home,  # type: ignore[arg-type]
                            overwrite=True)
    except VaultError:
        pass  # refusing the version is fine
    assert (home / ".ssh" / "authorized_keys").read_bytes() != key, (
        "`link get --overwrite` replaced her ~/.ssh/authorized_keys through the symlink the link's "
        "first version made: --overwrite reached outside the link's top")
