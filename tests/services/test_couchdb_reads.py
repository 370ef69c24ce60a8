"""Reads of a vault kept in CouchDB (``init --couchdb``) never hold up the mount.

A file's first read checks its records against the signed version document,
which lives on the server (store/couch.py ``CouchPlaces``).  That fetch must
not run on the trio thread: a slow or stalling server would stop every other
request of the mount (``ls``, ``stat``, other files) until it answered.  The
server here is real (pouchdb-server); between it and the mount sits a
loopback relay of bytes that can hold the request for one document, as a
stalled server would.
"""

from __future__ import annotations

import contextlib
import os
import socket
import subprocess
import sys
import threading
from pathlib import Path
from urllib.parse import urlsplit

import adversary
from conftest import PASSPHRASE, fusevault, mounted

from fusevault.vault.model import users
from fusevault.vault.model.nodes import open_node_doc

HANG_GUARD = 60  # seconds: only ends a run that hangs; a pass never waits for it


class StallingRelay:
    """Forwards loopback TCP to the CouchDB server; a request naming ``hold_for``
    waits (unanswered) until ``release`` is set."""

    def __init__(self, target: str) -> None:
        parts = urlsplit(target)
        self.target = (parts.hostname, parts.port)
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.url = f"{parts.scheme}://127.0.0.1:{self.listener.getsockname()[1]}{parts.path}"
        self.hold_for: bytes | None = None
        self.held, self.release = threading.Event(), threading.Event()
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self.listener.accept()
            except OSError:
                return
            server = socket.create_connection(self.target)
            threading.Thread(target=self._pump, args=(client, server, True), daemon=True).start()
            threading.Thread(target=self._pump, args=(server, client, False), daemon=True).start()

    def _pump(self, src: socket.socket, dst: socket.socket, requests: bool) -> None:
        with contextlib.suppress(OSError):
            while data := src.recv(65536):
                if requests and self.hold_for is not None and self.hold_for in data:
                    self.held.set()
                    self.release.wait(HANG_GUARD)
                dst.sendall(data)
        with contextlib.suppress(OSError):
            dst.shutdown(socket.SHUT_WR)

    def close(self) -> None:
        self.release.set()
        self.listener.close()


def _head_of(server: adversary.Server, name: str) -> str:
    """The current version id of alice's ``name`` (read as the owner would)."""
    (user,) = [u for u in server.all("UserDetails") if u.get("username") == "alice"]
    key = users.unlock(user, PASSPHRASE.encode())
    for doc in server.all("node"):
        if doc.get("owner") == key.user_id and not doc.get("delete"):
            _, attrs = open_node_doc(doc, key)
            if any(n == name for _, n in attrs["links"]):
                return attrs["head"]
    raise AssertionError(f"no node {name}")


def _slow_and_other(tmp_path: Path, couchdb_url: str, relay: StallingRelay, slow: str) -> tuple[Path, Path]:
    """alice's vault kept in CouchDB behind ``relay``, with slow.txt (``slow``) and other.txt written
    through one mount; from now on the relay holds the request for slow.txt's version document.
    (vault, mount point)."""
    vault, mnt = tmp_path / "vault", tmp_path / "mnt"
    made = fusevault("init", vault, "--user", "alice", "--couchdb", relay.url)
    assert made.returncode == 0, made.stderr
    with mounted(vault, mnt):
        (mnt / "slow.txt").write_text(slow)
        (mnt / "other.txt").write_text("meanwhile")
    relay.hold_for = _head_of(adversary.Server(couchdb_url), "slow.txt").encode()
    return vault, mnt


def test_a_stalled_version_fetch_holds_up_only_its_own_read(tmp_path: Path, couchdb_url: str) -> None:
    relay = StallingRelay(couchdb_url)
    try:
        vault, mnt = _slow_and_other(tmp_path, couchdb_url, relay, "first read waits for the server")
        with mounted(vault, mnt):  # a new process: nothing of slow.txt's version is known yet
            reader = subprocess.Popen(["cat", str(mnt / "slow.txt")], stdout=subprocess.PIPE, text=True)
            try:
                assert relay.held.wait(HANG_GUARD), "the read never asked the server for the version"
                # While that request hangs, the mount answers everyone else.
                listing = subprocess.run(["ls", str(mnt)], capture_output=True, text=True, timeout=HANG_GUARD)
                assert sorted(listing.stdout.split()) == ["other.txt", "slow.txt"]
                assert os.stat(mnt / "other.txt").st_size == len("meanwhile")
                assert reader.poll() is None  # still waiting for its server
            finally:
                relay.release.set()
                out, _ = reader.communicate(timeout=HANG_GUARD)
            assert out == "first read waits for the server"
    finally:
        relay.close()


def test_a_stalled_version_fetch_holds_up_only_its_own_truncation(tmp_path: Path, couchdb_url: str) -> None:
    """truncate(2) of a closed file opens its contents (its manifest, checked
    against the version document on the server) outside the trio thread too."""
    relay = StallingRelay(couchdb_url)
    try:
        vault, mnt = _slow_and_other(tmp_path, couchdb_url, relay, "cut short while the server stalls")
        with mounted(vault, mnt):  # a new process: nothing of slow.txt's version is known yet
            # By path, with no open(2): the mount changes a file no handle holds.
            cutter = subprocess.Popen([sys.executable, "-c", "import os, sys; os.truncate(sys.argv[1], 6)",
                                       str(mnt / "slow.txt")])
            try:
                assert relay.held.wait(HANG_GUARD), "the truncation never asked the server for the version"
                # While that request hangs, the mount answers everyone else (a
                # mount whose trio thread waits answers nothing until the relay gives up).
                looked = subprocess.run(["stat", "-c", "%s", str(mnt / "other.txt")], capture_output=True,
                                        text=True, timeout=HANG_GUARD / 2)
                assert looked.stdout.split() == [str(len("meanwhile"))]
                assert cutter.poll() is None  # still waiting for its server
            finally:
                relay.release.set()
                assert cutter.wait(HANG_GUARD) == 0
            assert (mnt / "slow.txt").read_text() == "cut sh"
        with mounted(vault, mnt):
            assert (mnt / "slow.txt").read_text() == "cut sh"  # a version of its own, committed at once
    finally:
        relay.close()


def test_a_stalled_version_fetch_holds_up_only_the_old_version_opened_in_versions(
        tmp_path: Path, couchdb_url: str) -> None:
    """Opening an old version in ``.versions/`` opens its contents (its manifest, checked against that
    version's document on the server) outside the trio thread too."""
    relay = StallingRelay(couchdb_url)
    try:
        vault, mnt = _slow_and_other(tmp_path, couchdb_url, relay, "the first version")
        first, relay.hold_for = relay.hold_for, None
        with mounted(vault, mnt):
            (mnt / "slow.txt").write_text("the second version")
        with mounted(vault, mnt):  # a new process: nothing of the first version is known yet
            names = sorted((mnt / ".versions" / "slow.txt").iterdir())  # named by time: the first first
            assert len(names) == 2, names
            relay.hold_for = first
            reader = subprocess.Popen(["cat", str(names[0])], stdout=subprocess.PIPE, text=True)
            try:
                assert relay.held.wait(HANG_GUARD), "the open never asked the server for the version"
                looked = subprocess.run(["stat", "-c", "%s", str(mnt / "other.txt")], capture_output=True,
                                        text=True, timeout=HANG_GUARD / 2)
                assert looked.stdout.split() == [str(len("meanwhile"))]
                assert reader.poll() is None  # still waiting for its server
            finally:
                relay.release.set()
                out, _ = reader.communicate(timeout=HANG_GUARD)
            assert out == "the first version"
    finally:
        relay.close()


def test_a_stalled_version_fetch_holds_up_only_the_restore_that_copies_it(
        tmp_path: Path, couchdb_url: str) -> None:
    """``restore --to`` opens the old version's contents (its manifest, checked against its document on
    the server) outside the trio thread too."""
    relay = StallingRelay(couchdb_url)
    try:
        vault, mnt = _slow_and_other(tmp_path, couchdb_url, relay, "the first version")
        first, relay.hold_for = relay.hold_for, None
        with mounted(vault, mnt):
            (mnt / "slow.txt").write_text("the second version")
        with mounted(vault, mnt):  # a new process: nothing of the first version is known yet
            relay.hold_for = first
            done: list[subprocess.CompletedProcess] = []
            restore = threading.Thread(target=lambda: done.append(fusevault(
                "restore", mnt / "slow.txt", "--version", first.decode(), "--to", mnt / "copy.txt")))
            restore.start()
            try:
                assert relay.held.wait(HANG_GUARD), "the restore never asked the server for the version"
                looked = subprocess.run(["stat", "-c", "%s", str(mnt / "other.txt")], capture_output=True,
                                        text=True, timeout=HANG_GUARD / 2)
                assert looked.stdout.split() == [str(len("meanwhile"))]
                assert restore.is_alive()  # still waiting for its server
            finally:
                relay.release.set()
                restore.join(HANG_GUARD)
            assert done and done[0].returncode == 0, done
            assert (mnt / "copy.txt").read_text() == "the first version"
    finally:
        relay.close()
