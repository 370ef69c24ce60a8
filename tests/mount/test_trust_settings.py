"""Issue 22, settings: what a store writer puts in the settings, Peers and Retention documents is
not acted on (real mounts, the attacker of tests/adversary.py)."""

from __future__ import annotations

import json
import socket
import threading
import time
from collections.abc import Callable
from pathlib import Path

import adversary
import pytest
from conftest import fusevault, mount_status, mounted
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from fusevault.crypto.signing import sign_doc

FORGED = {"delete_file_from_source": True, "passphrase_expiry_ttl": {"ttl": "3650", "unit": "day"},
          "settle_seconds": 0.1}


def wait_for(what: str, check: Callable[[], bool], timeout: float = 90) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.1)


def status(mnt: Path) -> dict:
    return mount_status(mnt)  # ``fusevault status MNT --json``'s entry, asked in-process (conftest.py)


def warned(mnt: Path, words: str) -> bool:
    return any(words in alarm["text"] for alarm in status(mnt).get("alarms", []))


def user_doc(vault: Path) -> dict:
    [doc] = adversary.docs(vault, "UserDetails")
    return doc


def forge_user(vault: Path, how: str, changes: dict) -> None:
    """The store writer changes the user's settings: unsigned, or signed by its own key in the
    user's name (swapping the document's public key too would fail the unlock: the sealed private
    keys no longer match)."""
    doc = {k: v for k, v in user_doc(vault).items() if k != "sig"}
    doc.update(changes)
    if how == "attacker-key":
        doc = sign_doc(doc["_id"], Ed25519PrivateKey.generate(), doc)
    adversary.put(vault, doc)


def documents(tmp_path: Path) -> tuple[Path, dict[str, bytes]]:
    folder = tmp_path / "Documents"
    folder.mkdir()
    files = {"taxes.pdf": b"the user's taxes\n", "letter.txt": b"dear bank\n"}
    for name, data in files.items():
        (folder / name).write_bytes(data)
    return folder, files


@pytest.mark.parametrize("how", ["unsigned", "attacker-key"])
def test_forged_settings_are_not_applied(vault: Path, tmp_path: Path, how: str) -> None:
    folder, files = documents(tmp_path)
    forge_user(vault, how, {**FORGED, "source_dir_to_watch": str(folder)})
    with mounted(vault, tmp_path / "mnt") as mnt:
        wait_for("the import service to start", lambda: status(mnt)["tasks"]["import"]["state"] != "starting")
        mount = status(mnt)
        assert mount["tasks"]["import"]["state"] == "off", mount["tasks"]
        [unlocked] = mount["unlocked"]
        assert unlocked["expires"] - unlocked["since"] < 9 * 3600  # the built-in 8 hours, not 3650 days
        assert any("not signed with their key" in a["text"] for a in mount["alarms"]), mount["alarms"]
        shown = fusevault("status", mnt, passphrase=None).stdout
        assert "WARNING" in shown and "not signed with their key" in shown
        for name, data in files.items():
            assert (folder / name).read_bytes() == data
        assert not (mnt / "Imported").exists()

        config = json.loads(fusevault("config", "show", "--mount", mnt, "--json", passphrase=None).stdout)
        assert config["source_dir_to_watch"] is None and config["delete_file_from_source"] is False
        assert config["pending"]["source_dir_to_watch"] == str(folder)
        assert config["pending"]["delete_file_from_source"] is True
        assert config["pending"]["passphrase_expiry_ttl"] == {"ttl": "3650", "unit": "day"}
        text = fusevault("config", "show", "--mount", mnt, passphrase=None).stdout
        assert "pending" in text and "NOT signed with your key" in text
        refused = fusevault("config", "confirm", "--mount", mnt, passphrase=None)  # not a terminal
        assert refused.returncode != 0 and "--yes" in refused.stderr

        (mnt / "still.txt").write_bytes(b"serving")
        assert (mnt / "still.txt").read_bytes() == b"serving"

        # The person's own `config set` on this device applies at once.
        inbox = tmp_path / "Inbox"
        inbox.mkdir()
        result = fusevault("config", "set", "source_dir_to_watch", inbox, "--mount", mnt, passphrase=None)
        assert result.returncode == 0, result.stderr
        (inbox / "new.txt").write_bytes(b"imported\n")
        wait_for("the import", lambda: (mnt / "Imported" / "new.txt").exists())
        assert (inbox / "new.txt").exists()  # deletion was never confirmed
        for name, data in files.items():
            assert (folder / name).read_bytes() == data
    assert sorted(p.name for p in folder.iterdir()) == sorted(files)


def test_settings_from_another_device_wait_for_confirmation(vault: Path, tmp_path: Path) -> None:
    """Signed by the user (another device of theirs), but not confirmed here: pending, then confirmed."""
    folder, files = documents(tmp_path)
    other = tmp_path / "other-device"
    result = fusevault("config", "set", "source_dir_to_watch", folder, "--vault", vault,
                       env={"FUSEVAULT_STATE_DIR": str(other)})
    assert result.returncode == 0, result.stderr
    result = fusevault("config", "set", "delete_file_from_source", "on", "--vault", vault,
                       env={"FUSEVAULT_STATE_DIR": str(other)})
    assert result.returncode == 0, result.stderr
    with mounted(vault, tmp_path / "mnt") as mnt:
        wait_for("the import service to start", lambda: status(mnt)["tasks"]["import"]["state"] != "starting")
        assert status(mnt)["tasks"]["import"]["state"] == "off"
        config = json.loads(fusevault("config", "show", "--mount", mnt, "--json", passphrase=None).stdout)
        assert config["pending"] == {"source_dir_to_watch": str(folder), "delete_file_from_source": True}
        assert config["source_dir_to_watch"] is None
        for name, data in files.items():
            assert (folder / name).read_bytes() == data
        result = fusevault("config", "confirm", "--yes", "--mount", mnt, passphrase=None)
        assert result.returncode == 0 and "source_dir_to_watch" in result.stdout, result.stderr
        wait_for("the import", lambda: all((mnt / "Imported" / name).exists() for name in files))
        config = json.loads(fusevault("config", "show", "--mount", mnt, "--json", passphrase=None).stdout)
        assert config["pending"] == {} and config["source_dir_to_watch"] == str(folder)


class Listener:
    """A loopback TCP port that records who connects (and answers nothing)."""

    def __init__(self) -> None:
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(16)
        self.port = self.sock.getsockname()[1]
        self.connections = 0
        threading.Thread(target=self._serve, daemon=True).start()

    def _serve(self) -> None:
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            self.connections += 1
            conn.close()

    def close(self) -> None:
        self.sock.close()


def test_a_forged_peer_is_not_contacted(vault: Path, tmp_path: Path) -> None:
    mine, theirs = Listener(), Listener()
    try:
        result = fusevault("peer", "add", "nas", f"http://127.0.0.1:{mine.port}/vault", "--offline",
                           "--vault", vault, passphrase=None)
        assert result.returncode == 0, result.stderr
        secret = tmp_path / "id_rsa"
        secret.write_text("ssh-private:key material\n")
        adversary.put(vault, {"_id": "a-planted-peer", "type": "Peers", "name": "backup", "host": "127.0.0.1",
                              "port": theirs.port, "scheme": "http", "db": "vault",
                              "credentials": {"file": str(secret)}, "path_to_dump_chunks": None})
        with mounted(vault, tmp_path / "mnt") as mnt:
            wait_for("the peer added here to be contacted", lambda: mine.connections > 0)
            wait_for("the planted peer to be refused", lambda: warned(mnt, "was not added on this device"))
            assert "WARNING" in fusevault("status", mnt, passphrase=None).stdout
            assert theirs.connections == 0
            (mnt / "still.txt").write_bytes(b"serving")
            assert (mnt / "still.txt").read_bytes() == b"serving"
        # The same for a peer added here whose host the store writer changed.
        [nas] = [p for p in adversary.docs(vault, "Peers") if p["name"] == "nas"]
        adversary.put(vault, {**nas, "port": theirs.port, "credentials": {"file": str(secret)}})
        with mounted(vault, tmp_path / "mnt") as mnt:
            wait_for("the changed peer to be refused", lambda: warned(mnt, "'nas'"))
            assert theirs.connections == 0
    finally:
        mine.close()
        theirs.close()


AGGRESSIVE = {"keep_all_minutes": 0, "keep_all_days": 0, "daily_days": 0, "weekly_weeks": 0, "trash_days": 0}


def _versions(mnt: Path, name: str) -> int:
    result = fusevault("history", mnt / name, "--json", passphrase=None)
    assert result.returncode == 0, result.stderr
    return len(json.loads(result.stdout)["versions"])


@pytest.mark.parametrize("which", ["own", "default"])
def test_a_forged_retention_policy_drops_nothing(vault: Path, tmp_path: Path, which: str) -> None:
    with mounted(vault, tmp_path / "mnt") as mnt:
        for n in range(3):
            (mnt / "f.txt").write_bytes(b"version %d\n" % n)
        assert _versions(mnt, "f.txt") == 3
    uid = user_doc(vault)["_id"]
    if which == "own":
        adversary.put(vault, {"_id": f"retention-{uid}", "type": "Retention", "user": uid, **AGGRESSIVE})
    else:
        adversary.put(vault, {"_id": "retention", "type": "Retention", **AGGRESSIVE})
    with mounted(vault, tmp_path / "mnt") as mnt:
        result = fusevault("gc", mnt, "--json", passphrase=None)
        assert result.returncode == 0, result.stderr
        assert json.loads(result.stdout)["versions_dropped"] == 0, result.stdout
        assert _versions(mnt, "f.txt") == 3
        assert (mnt / "f.txt").read_bytes() == b"version 2\n"
        if which == "own":
            assert warned(mnt, "not signed by its user")
            assert "WARNING" in fusevault("status", mnt, passphrase=None).stdout
        # The person's own policy, set here, still applies.
        result = fusevault("retention", mnt, "--keep-every", "0", "--keep-all", "0", "--daily", "0",
                           "--weekly", "0", passphrase=None)
        assert result.returncode == 0, result.stderr
        result = fusevault("gc", mnt, "--json", passphrase=None)
        assert json.loads(result.stdout)["versions_dropped"] == 2, result.stdout
