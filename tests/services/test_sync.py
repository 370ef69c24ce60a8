"""Peer sync through CouchDB replication, with pouchdb-server as the peer.

Two devices are two vault replicas, each mounted by its own `fusevault mount`
process; they meet only through the CouchDB-protocol server.
"""

from __future__ import annotations

import base64
import contextlib
import json
import os
import socket
import subprocess
import time
import urllib.request
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from conftest import (
    PouchServer,
    docs_of,
    first_device,
    force_unmount,
    fusevault,
    laptop_and_desktop,
    mounted,
    new_device,
    settled,
    sync_answer,
    sync_status,
    wait_for,
)

from fusevault.store import replica
from fusevault.store.local import LocalStore
from fusevault.vault.format.atomic import fsync_dir  # in a mount: commits what waits (fsyncdir)

# Several scenes stop the server and start it again: the devices retry it every second (conftest.py).
pytestmark = pytest.mark.usefixtures("quick_retry")

# The large file sealed, sent, fetched and placed: on a loaded machine (CI,
# many mounts at once) this alone can take longer than LONG, at any commit.
LARGE = 240
# 20 MiB: 1,280 blocks of 16 KiB under a manifest tree of a root and 5 leaves (256 blocks each),
# more than a batch of the changes feed (200) and 40 batches of records (32): the same shape and
# boundaries as any larger file; the edit at 12 MiB falls inside a middle leaf.
BIG, EDIT_AT = 20 << 20, 12 << 20


def server_dump(url: str) -> bytes:
    """Everything the server's database holds, with record contents decoded."""
    with urllib.request.urlopen(f"{url}/_all_docs?include_docs=true&conflicts=true", timeout=30) as r:
        rows = json.load(r)["rows"]
    # Record contents decoded, the rest as JSON (base64 text would hold short
    # words by chance).
    out = [base64.b64decode(row["doc"].pop("data")) for row in rows if "data" in row["doc"]]
    return b"\n".join([json.dumps(rows).encode(), *out])


def record_ids(url: str) -> list[str]:
    with urllib.request.urlopen(f"{url}/_all_docs", timeout=30) as r:
        return [row["id"] for row in json.load(r)["rows"] if row["id"].startswith("rec-")]


def test_two_devices_exchange_creates_edits_renames_deletes_and_a_large_file(
        couchdb_url: str, tmp_path: Path) -> None:
    laptop = first_device(couchdb_url, tmp_path)
    with mounted(laptop, tmp_path / "a") as a:
        (a / "projects").mkdir()
        (a / "projects" / "plan.txt").write_bytes(b"AAAA secret plan")
        wait_for(lambda: settled(a), "the laptop to send its first files")
        desktop = new_device(couchdb_url, tmp_path, "desktop")
        with mounted(desktop, tmp_path / "b") as b:
            assert (b / "projects" / "plan.txt").read_bytes() == b"AAAA secret plan"
            # The desktop's kernel caches the page (keep_cache) and knows the
            # name is missing; both must be dropped when the laptop's change comes.
            assert not (b / "projects" / "new.txt").exists()
            (a / "projects" / "plan.txt").write_bytes(b"BBBB secret plan")
            (a / "projects" / "new.txt").write_bytes(b"made on the laptop")
            wait_for(lambda: (b / "projects" / "plan.txt").read_bytes() == b"BBBB secret plan",
                     "the edit to reach the desktop")
            wait_for(lambda: (b / "projects" / "new.txt").exists(), "the new file to reach the desktop")
            assert (b / "projects" / "new.txt").read_bytes() == b"made on the laptop"

            # More files than one batch of the changes feed, in a folder whose
            # own document changes after them (its times): all of them show.
            (a / "many").mkdir()
            for i in range(450):
                (a / "many" / f"{i}.txt").write_text(str(i))
            os.utime(a / "many")
            wait_for(lambda: len(os.listdir(b / "many")) == 450,
                     lambda: f"450 files on the desktop, not {len(os.listdir(b / 'many'))}")
            assert (b / "many" / "449.txt").read_text() == "449"

            # The other way: an edit that grows the file, a rename, a delete.
            with open(b / "projects" / "plan.txt", "ab") as f:
                f.write(b" and more from the desktop")
            os.rename(b / "projects" / "new.txt", b / "renamed.txt")
            wait_for(lambda: (a / "renamed.txt").exists(), "the rename to reach the laptop")
            assert not (a / "projects" / "new.txt").exists()
            wait_for(lambda: (a / "projects" / "plan.txt").read_bytes()
                     == b"BBBB secret plan and more from the desktop", "the append to reach the laptop")
            os.unlink(b / "renamed.txt")
            wait_for(lambda: not (a / "renamed.txt").exists(), "the delete to reach the laptop")
            # A delete goes through the trash on every device: restorable there.
            trash = fusevault("trash", a, "--json")
            assert "renamed.txt" in trash.stdout, trash.stdout
            restored = fusevault("restore", a / "renamed.txt")
            assert restored.returncode == 0, restored.stderr
            wait_for(lambda: (b / "renamed.txt").exists(), "the restore to reach the desktop")
            assert (b / "renamed.txt").read_bytes() == b"made on the laptop"

            # BIG, block by block; never seen half-arrived: the desktop sees
            # the empty file `cp` made first, then all of it.
            big = tmp_path / "big"
            big.write_bytes(os.urandom(BIG))
            subprocess.run(["cp", big, a / "big"], check=True)
            sizes = set()

            def arrived() -> bool:
                sizes.add((b / "big").stat().st_size)
                return BIG in sizes

            wait_for(arrived, "the large file to reach the desktop", LARGE)
            assert sizes <= {0, BIG}, sizes
            assert subprocess.run(["cmp", big, b / "big"]).returncode == 0

            # A small edit of the large file sends only the blocks it changed.
            wait_for(lambda: settled(a), "the laptop to be done sending")
            before, ids_before = sync_status(a), set(record_ids(couchdb_url))
            with open(a / "big", "r+b") as f:
                f.seek(EDIT_AT)
                f.write(b"x" * 4096)
            wait_for(lambda: settled(a) and sync_status(a)["records_up"] > before["records_up"],
                     "the edit to be sent")
            after = sync_status(a)
            # One block, its leaf of the manifest tree and the root (vault/format/manifest_tree.py).
            assert after["records_up"] - before["records_up"] == 3
            assert len(set(record_ids(couchdb_url)) - ids_before) == 3
            assert after["bytes_up"] - before["bytes_up"] < 300_000
            expected = bytearray(big.read_bytes())
            expected[EDIT_AT:EDIT_AT + 4096] = b"x" * 4096
            wait_for(lambda: (b / "big").read_bytes() == expected, "the edit to reach the desktop", LARGE)

    # The server saw only ciphertext: no file name, no content (user names
    # are in clear in UserDetails, as docs/SECURITY.md lists).
    dump = server_dump(couchdb_url)
    for plain in (b"plan.txt", b"secret plan", b"renamed.txt", b"made on the laptop", b"projects",
                  big.read_bytes()[:64], big.read_bytes()[-64:]):
        assert plain not in dump, plain


def test_the_server_killed_mid_transfer_resumes_without_loss_or_duplicates(tmp_path: Path) -> None:
    server = PouchServer(tmp_path / "pouch")
    url = f"{server.start()}/vault"
    try:
        laptop = first_device(url, tmp_path)
        data = os.urandom(30 << 20)
        with mounted(laptop, tmp_path / "a") as a:
            wait_for(lambda: settled(a), "the first contact")
            (a / "big").write_bytes(data)
            wait_for(lambda: sync_status(a)["records_up"] > 10, "the transfer to begin")
            server.kill()
            # Killed in the middle of the 1,929 records: 1,920 blocks of 16 KiB,
            # 8 leaves of the manifest tree and its root.
            assert sync_status(a)["records_up"] < 1928
            wait_for(lambda: sync_status(a)["error"], "the laptop to notice")
            (a / "while-away.txt").write_bytes(b"written while the server was away")
            server.start()
            wait_for(lambda: settled(a), "the laptop to finish after the server is back")
            sent = sync_status(a)["records_up"]
        # The server holds exactly the records the laptop wrote: none missing
        # after the break, none extra.  None was sent again after the restart
        # (a batch the server took just before dying is not counted at all).
        written = _laptop_records(laptop)
        assert set(record_ids(url)) == written
        assert sent <= len(written)
        desktop = new_device(url, tmp_path, "desktop")
        with mounted(desktop, tmp_path / "b") as b:
            assert sorted(os.listdir(b)) == ["big", "while-away.txt"]
            assert (b / "big").read_bytes() == data
            assert (b / "while-away.txt").read_bytes() == b"written while the server was away"
    finally:
        server.stop()


def _laptop_records(vault: Path) -> set[str]:
    from fusevault.store.local import LocalStore
    from fusevault.sync.content_docs import record_id

    store = LocalStore(vault / "store.sqlite")
    try:
        return {record_id(fid, vid, idx) for fid, vid, idx in
                store.db.execute("SELECT fid, vid, idx FROM places")}
    finally:
        store.close()


def test_two_servers_replicating_to_each_other_carry_changes_between_devices(
        couchdb_server: str, tmp_path: Path) -> None:
    other = PouchServer(tmp_path / "pouch2")
    other.start()
    try:
        first = f"{couchdb_server}/fv{uuid.uuid4().hex[:12]}"
        second = f"{other.url}/mirror"
        laptop = first_device(first, tmp_path)
        with mounted(laptop, tmp_path / "a") as a:
            (a / "one.txt").write_bytes(b"from the laptop")
            wait_for(lambda: settled(a), "the laptop's first push")
            for source, target in ((first, second), (second, first)):
                _replicate(other.url, source, target)
            desktop = wait_for(lambda: _join_when_there(second, tmp_path), "the mirror to have the vault")
            with mounted(desktop, tmp_path / "b") as b:
                # Its bytes, not just its name: the two servers may deliver a node before its version.
                wait_for(lambda: (b / "one.txt").read_bytes() == b"from the laptop", "the laptop's file")
                (b / "two.txt").write_bytes(b"from the desktop")
                wait_for(lambda: (a / "two.txt").read_bytes() == b"from the desktop", "the desktop's file")
    finally:
        other.stop()


def test_a_file_whose_node_comes_before_its_version_waits_and_never_reads_eio(
        couchdb_server: str, tmp_path: Path) -> None:
    """A replicated server delivers documents in any order: a file's node
    before the version it names.  The file is not shown (new) or keeps its
    bytes (changed) until the version and its records are here, never EIO."""
    first = f"{couchdb_server}/fv{uuid.uuid4().hex[:12]}"
    second = f"{couchdb_server}/mirror{uuid.uuid4().hex[:12]}"
    laptop = first_device(first, tmp_path)
    with mounted(laptop, tmp_path / "a") as a:
        (a / "one.txt").write_bytes(b"old bytes")
        wait_for(lambda: settled(a), "the laptop's first push")
        _replicate(couchdb_server, first, second, continuous=False)
        desktop = wait_for(lambda: _join_when_there(second, tmp_path), "the mirror to have the vault")
        with mounted(desktop, tmp_path / "b") as b:
            wait_for(lambda: (b / "one.txt").read_bytes() == b"old bytes", "the first file")
            (a / "one.txt").write_bytes(b"new bytes")
            (a / "two.txt").write_bytes(b"a new file")
            (a / "marker").touch()  # empty: no version, so shown as soon as its node is here
            wait_for(lambda: settled(a), "the laptop's second push")
            _copy(first, second, lambda doc: doc.get("type") == "node")  # as a server out of order may
            wait_for(lambda: (b / "marker").exists(), "the nodes alone on the desktop")
            assert "two.txt" not in os.listdir(b)
            assert (b / "one.txt").read_bytes() == b"old bytes"
            # Then every document but the records: still not readable, so still held back.
            (a / "marker2").touch()
            wait_for(lambda: settled(a), "the laptop's third push")
            _copy(first, second, lambda doc: doc.get("type") not in ("Record", "node"))
            _copy(first, second, lambda doc: doc.get("type") == "node")  # after them: marker2's
            wait_for(lambda: (b / "marker2").exists(), "the versions on the desktop")
            assert "two.txt" not in os.listdir(b)
            assert (b / "one.txt").read_bytes() == b"old bytes"
            _replicate(couchdb_server, first, second, continuous=False)  # the records, alone
            wait_for(lambda: (b / "two.txt").exists(), "the new file once its version came")
            assert (b / "two.txt").read_bytes() == b"a new file"
            wait_for(lambda: (b / "one.txt").read_bytes() == b"new bytes", "the first file's new version")


def _copy(source: str, target: str, which) -> None:
    """The documents of ``source`` that ``which`` picks into ``target``, with
    their revision histories (as replication writes them), and nothing else."""
    with urllib.request.urlopen(f"{source}/_all_docs?include_docs=true", timeout=30) as r:
        ids = [row["id"] for row in json.load(r)["rows"] if which(row["doc"])]
    docs = []
    for doc_id in ids:
        with urllib.request.urlopen(f"{source}/{doc_id}?revs=true", timeout=30) as r:
            docs.append(json.load(r))
    body = json.dumps({"docs": docs, "new_edits": False}).encode()
    request = urllib.request.Request(f"{target}/_bulk_docs", data=body, method="POST",
                                     headers={"content-type": "application/json"})
    urllib.request.urlopen(request, timeout=30).read()


def _replicate(server: str, source: str, target: str, *, continuous: bool = True) -> None:
    body = json.dumps({"source": source, "target": target, "continuous": continuous, "create_target": True})
    request = urllib.request.Request(f"{server}/_replicate", data=body.encode(), method="POST",
                                     headers={"content-type": "application/json"})
    urllib.request.urlopen(request, timeout=30).read()


def _join_when_there(url: str, tmp_path: Path) -> Path | None:
    vault = tmp_path / "desktop"
    result = fusevault("init", vault, "--join", url, "--user", "alice")
    if result.returncode != 0:
        return None
    return vault


def test_peer_commands_and_joining_refuse_mistakes_in_one_line(couchdb_url: str, tmp_path: Path) -> None:
    vault = tmp_path / "v"
    assert fusevault("init", vault, "--user", "alice").returncode == 0
    secret_url = couchdb_url.replace("http://", "http://bob:hunter2@")
    refused = fusevault("peer", "add", "s", secret_url, "--vault", vault, passphrase=None)
    assert refused.returncode == 12 and "hunter2" not in refused.stderr + refused.stdout
    assert "credentials do not go in the URL" in refused.stderr
    creds = tmp_path / "creds"
    creds.write_text("bob:hunter2\n")
    creds.chmod(0o600)
    # The server knows no bob: refused (23) unless added --offline.
    unknown = fusevault("peer", "add", "s", couchdb_url, "--vault", vault, "--credentials-file", creds,
                        passphrase=None)
    assert unknown.returncode == 23 and "refused the credentials" in unknown.stderr, unknown.stderr
    assert "hunter2" not in unknown.stderr + unknown.stdout
    added = fusevault("peer", "add", "s", couchdb_url, "--vault", vault, "--credentials-file", creds,
                      "--offline", passphrase=None)
    assert added.returncode == 0, added.stderr
    listed = fusevault("peer", "list", "--vault", vault, "--json", passphrase=None)
    (peer,) = json.loads(listed.stdout)
    assert peer["url"] == couchdb_url and peer["credentials"] == f"file {creds}"
    assert "hunter2" not in listed.stdout
    again = fusevault("peer", "add", "s", couchdb_url, "--vault", vault, passphrase=None)
    assert again.returncode == 11
    assert fusevault("peer", "remove", "nope", "--vault", vault, passphrase=None).returncode == 4
    assert fusevault("peer", "remove", "s", "--vault", vault, passphrase=None).returncode == 0
    assert json.loads(fusevault("peer", "list", "--vault", vault, "--json", passphrase=None).stdout) == []

    # Joining: a database without a vault, then a wrong passphrase: nothing is left behind.
    empty = fusevault("init", tmp_path / "j1", "--join", couchdb_url + "x", "--user", "alice")
    assert empty.returncode == 12 and "Traceback" not in empty.stderr
    assert not (tmp_path / "j1").exists()
    laptop = first_device(couchdb_url + "y", tmp_path)
    with mounted(laptop, tmp_path / "a") as a:
        wait_for(lambda: settled(a), "the first push")
    wrong = fusevault("init", tmp_path / "j2", "--join", couchdb_url + "y", "--user", "alice",
                      passphrase="wrong")
    assert wrong.returncode == 3 and "Traceback" not in wrong.stderr
    assert not (tmp_path / "j2").exists()
    # A database that holds another vault is refused by `peer add` (24), and,
    # added --offline, by the mount, which says so.
    foreign = fusevault("peer", "add", "other", couchdb_url + "y", "--vault", vault, passphrase=None)
    assert foreign.returncode == 24 and "another vault" in foreign.stderr, foreign.stderr
    assert "Traceback" not in foreign.stderr and len(foreign.stderr.splitlines()) == 1
    assert json.loads(fusevault("peer", "list", "--vault", vault, "--json", passphrase=None).stdout) == []
    offline = fusevault("peer", "add", "other", couchdb_url + "y", "--vault", vault, "--offline",
                        passphrase=None)
    assert offline.returncode == 0 and "not checked" in offline.stdout, offline.stderr
    with mounted(vault, tmp_path / "v-mnt") as m:
        status = wait_for(lambda: sync_status(m)["error"], "the mount to refuse the database")
        assert "another vault" in status


def test_peer_add_checks_the_server_before_it_says_anything_is_added(couchdb_url: str,
                                                                     tmp_path: Path) -> None:
    vault = tmp_path / "v"
    assert fusevault("init", vault, "--user", "alice").returncode == 0
    with socket.socket() as closed:  # a port nothing listens on
        closed.bind(("127.0.0.1", 0))
        down = f"http://127.0.0.1:{closed.getsockname()[1]}/vault"
        refused = fusevault("peer", "add", "nas", down, "--vault", vault, passphrase=None)
    assert refused.returncode == 23, refused.stderr
    assert "connection refused" in refused.stderr and "Traceback" not in refused.stderr
    assert len(refused.stderr.splitlines()) == 1 and refused.stdout == ""
    assert json.loads(fusevault("peer", "list", "--vault", vault, "--json", passphrase=None).stdout) == []
    # --offline adds it unchecked, and says so.
    offline = fusevault("peer", "add", "nas", down, "--vault", vault, "--offline", passphrase=None)
    assert offline.returncode == 0 and "not checked (--offline)" in offline.stdout, offline.stderr
    # A server that answers: the database is made, and named as reachable.
    added = fusevault("peer", "add", "server", couchdb_url, "--vault", vault, passphrase=None)
    assert added.returncode == 0 and "reachable, empty" in added.stdout, added.stderr
    with urllib.request.urlopen(couchdb_url, timeout=30) as made:
        assert json.load(made)["doc_count"] == 0


def _still(log: Path) -> bool:
    """Whether nothing was added to ``log`` for half a second."""
    size = log.stat().st_size
    time.sleep(0.5)
    return log.stat().st_size == size


def test_joining_checks_the_user_and_passphrase_before_it_pulls_anything(tmp_path: Path) -> None:
    server = PouchServer(tmp_path / "pouch", in_memory=True)
    url = f"{server.start()}/vault"
    requests = tmp_path / "pouch" / "server.log"  # pouchdb-server logs every request
    try:
        laptop = first_device(url, tmp_path)
        with mounted(laptop, tmp_path / "a") as a:
            (a / "big.bin").write_bytes(os.urandom(3 << 20))
            wait_for(lambda: settled(a), "the first push")
        # The laptop's longpoll, cut short by its unmount, is logged once pouchdb-server sees its
        # connection closed: maybe after the unmount returned.  Counted before the joins, not as theirs.
        wait_for(lambda: _still(requests), "the laptop's last request logged")
        before = requests.stat().st_size
        wrong = fusevault("init", tmp_path / "j1", "--join", url, "--user", "alice", passphrase="wrong")
        assert wrong.returncode == 3 and "Traceback" not in wrong.stderr, wrong.stderr
        unknown = fusevault("init", tmp_path / "j2", "--join", url, "--user", "nobody")
        assert unknown.returncode == 4 and "no user 'nobody'" in unknown.stderr, unknown.stderr
        assert not (tmp_path / "j1").exists() and not (tmp_path / "j2").exists()
        asked = requests.read_bytes()[before:].decode(errors="replace")
        assert "/vault/_find" in asked  # the log holds the requests...
        # ... and none of them pulled documents or blocks.
        assert not [line for line in asked.splitlines()
                    if "_changes" in line or "_bulk_get" in line or "_revs_diff" in line], asked
        joined = fusevault("init", tmp_path / "j3", "--join", url, "--user", "alice")
        assert joined.returncode == 0, joined.stderr
        assert "_bulk_get" in requests.read_bytes()[before:].decode(errors="replace")
    finally:
        server.stop()


def test_edits_made_while_apart_keep_both_sides(tmp_path: Path) -> None:
    with laptop_and_desktop(tmp_path, ("notes.txt", "gone.txt", "moved.txt")) as (server, laptop, a, desktop):
        with mounted(desktop, tmp_path / "b") as b:
            server.kill()  # apart from here
            (a / "notes.txt").write_bytes(b"the laptop's words")
            os.unlink(a / "gone.txt")
            os.rename(a / "moved.txt", a / "renamed.txt")
            time.sleep(0.05)  # the desktop's edit is the later one
            (b / "notes.txt").write_bytes(b"the desktop's words")
            (b / "gone.txt").write_bytes(b"edited on the desktop")
            (b / "moved.txt").write_bytes(b"edited on the desktop too")
            server.start()

            def agreed() -> bool:
                names = sorted(os.listdir(a))
                return (len(names) == 4 and names == sorted(os.listdir(b))
                        and settled(a) and settled(b))

            wait_for(agreed, lambda: f"both devices to agree: {os.listdir(a)} {os.listdir(b)} "
                                     f"{sync_status(a)} {sync_status(b)}")
            for mnt in (a, b):
                names = sorted(os.listdir(mnt))
                copy = [n for n in names if n.startswith("notes (conflict ")]
                assert names == sorted(["gone.txt", "notes.txt", "renamed.txt", *copy]), names
                assert copy[0].endswith(".txt")
                assert (mnt / "notes.txt").read_bytes() == b"the desktop's words"  # the later edit
                assert (mnt / copy[0]).read_bytes() == b"the laptop's words"
                assert (mnt / "gone.txt").read_bytes() == b"edited on the desktop"  # edit beats delete
                assert (mnt / "renamed.txt").read_bytes() == b"edited on the desktop too"  # both
            # Each .vf now holds its own records and the other device's at
            # other offsets: collecting old versions must free neither.
            # (The first one's deletions of version documents reach the other.)
            dropped = 0
            for mnt in (a, b):
                gc = fusevault("gc", mnt, "--as-of", "2099-01-01", "--json")
                assert gc.returncode == 0, gc.stderr
                dropped += json.loads(gc.stdout)["versions_dropped"]
            assert dropped > 0
            Path("/proc/sys/vm/drop_caches").write_text("3")
            for mnt in (a, b):
                assert (mnt / "notes.txt").read_bytes() == b"the desktop's words"
                assert (mnt / "renamed.txt").read_bytes() == b"edited on the desktop too"


HOOKS = Path(__file__).parents[1] / "hooks"  # sitecustomize.py: a pause point in a mount server


def _hooked(gate: Path) -> dict[str, str]:
    """The environment of a mount with that pause point.  This checkout's fusevault comes first on the
    path: sitecustomize.py imports it before ``-m`` puts the current folder there."""
    return {"PYTHONPATH": os.pathsep.join([str(HOOKS), str(HOOKS.parents[1])]),
            "PYTHON_FVTEST_CONFLICT_GATE": str(gate)}


@contextlib.contextmanager
def _only_the_desktop_meets_both_edits(tmp_path: Path, current: str | None = None
                                       ) -> Iterator[tuple[Path, dict, Path]]:
    """notes.txt edited on both devices while apart, the laptop's edit the later,
    and the laptop away again, so one device makes the conflict copy: yields
    (the desktop, not mounted; the environment that mounts it with the pause
    point of tests/hooks/sitecustomize.py; that pause point's gate folder).
    ``current``: "laptop" or "desktop", the side whose revision CouchDB's rule
    makes current (it saves twice: a higher generation), else left to the
    rule's tie-break between two random revision ids."""
    gate = tmp_path / "gate"
    gate.mkdir()
    hooked = _hooked(gate)
    with laptop_and_desktop(tmp_path, ("notes.txt",)) as (server, laptop, a, desktop):
        with mounted(desktop, tmp_path / "b") as b:
            wait_for(lambda: (b / "notes.txt").read_bytes() == b"as it was" and settled(b),
                     "the desktop's pull")
            server.kill()  # apart from here
            _save(b, b"the desktop's words", twice=current == "desktop")
        _save(a, b"the laptop's later words", twice=current == "laptop")  # the later edit keeps the name
        server.start()
        wait_for(lambda: settled(a), "the laptop's push")
        assert fusevault("unmount", a, passphrase=None).returncode == 0
        yield desktop, hooked, gate


def _save(mountpoint: Path, words: bytes, *, twice: bool) -> None:
    """Write notes.txt; ``twice``: a draft first, committed (fsync) before the
    words, so this side's revision is one generation ahead."""
    if twice:
        with open(mountpoint / "notes.txt", "wb") as draft:
            draft.write(b"a draft")
            os.fsync(draft.fileno())
    (mountpoint / "notes.txt").write_bytes(words)


def _conflicted_leaves(vault: Path) -> list[list[int]]:
    """Per document with a live other branch: the generations of its current
    revision and of the other branches."""
    store = LocalStore(vault / "store.sqlite")
    try:
        return [[int(rev.split("-")[0]) for rev in [store.get(doc_id)["_rev"]]
                 + [leaf["_rev"] for leaf in replica.other_leaves(store, doc_id)]]
                for doc_id in replica.conflicted(store)]
    finally:
        store.close()


def _mount_log(mountpoint: Path) -> str:
    """The log of the mounts made at ``mountpoint`` (fs/daemon.py ``_log_to_file``)."""
    from fusevault import paths

    return (paths.state_dir() / "logs" / f"mount-{paths.control_socket(mountpoint).stem}.log").read_text()


def _copies(mountpoint: Path) -> list[str]:
    return [name for name in os.listdir(mountpoint) if name.startswith("notes (conflict ")]


def test_a_conflict_copy_looked_at_while_it_is_made_reads_whole_once_shown(tmp_path: Path) -> None:
    """The unlucky moment of the sync test above, made certain: a program
    looks at the folder while the desktop makes the conflict copy (created,
    its bytes not written yet).  The kernel, which keeps its own size of a
    file it knows (writeback cache), then read the copy as empty for good.
    The copy is shown only once it holds the loser's bytes."""
    with _only_the_desktop_meets_both_edits(tmp_path) as (desktop, hooked, gate):
        with mounted(desktop, tmp_path / "b", env=hooked) as b:
            wait_for(lambda: (gate / "paused").exists(), "the desktop to start making the conflict copy")
            shown = _copies(b)
            for name in shown:
                os.stat(b / name)  # the kernel takes what it is told now
            (gate / "go").touch()
            wait_for(lambda: (gate / "settled").exists(), "the desktop to settle")
            (copy,) = _copies(b)
            assert (b / "notes.txt").read_bytes() == b"the laptop's later words"
            assert (b / copy).read_bytes() == b"the desktop's words"
            assert os.stat(b / copy).st_size == len(b"the desktop's words")
            assert shown == [], "a conflict copy was shown before it held the loser's bytes"


def test_a_conflict_copy_cut_short_by_kill_9_is_made_whole_at_the_next_mount(tmp_path: Path) -> None:
    """The mount killed while it makes the copy: no replica keeps an empty
    copy "made already"; the next mount settles the conflict again, whole."""
    with _only_the_desktop_meets_both_edits(tmp_path) as (desktop, hooked, gate):
        with mounted(desktop, tmp_path / "b", env=hooked) as b:
            wait_for(lambda: (gate / "paused").exists(), "the desktop to start making the conflict copy")
            force_unmount(b)  # kill -9, the copy created, its bytes not written
        with mounted(desktop, tmp_path / "b") as b:
            (copy,) = wait_for(lambda: _copies(b) and settled(b) and _copies(b),
                               lambda: f"the copy at the next mount: {_logs()}")
            assert (b / copy).read_bytes() == b"the desktop's words"
            assert (b / "notes.txt").read_bytes() == b"the laptop's later words"


def test_a_conflict_copy_cut_short_by_an_unmount_is_never_committed(tmp_path: Path) -> None:
    """Unmounted while it makes the copy (the settling cancelled, its bytes
    not written): nothing of the copy is saved, rather than an empty copy
    that every later settling takes for "made already".  (The next mount
    makes it: the test of a conflict left unsettled at an unmount.)"""
    with _only_the_desktop_meets_both_edits(tmp_path) as (desktop, hooked, gate):
        nodes = len(docs_of(desktop, "node"))
        with mounted(desktop, tmp_path / "b", env=hooked) as b:
            wait_for(lambda: (gate / "paused").exists(), "the desktop to start making the conflict copy")
            unmounted = fusevault("unmount", b, passphrase=None)
            assert unmounted.returncode == 0, unmounted.stderr
        assert len(docs_of(desktop, "node")) == nodes  # notes.txt changed, and no copy


@pytest.mark.parametrize("current", ["laptop", "desktop"])
def test_a_conflict_left_unsettled_at_an_unmount_is_copied_at_the_next_mount(tmp_path: Path,
                                                                             current: str) -> None:
    """Unmounted after the laptop's edit arrived, before the conflict copy was
    made: the rollback ledger saved then has seen the desktop's own losing
    edit, which is no replay.  The next mount makes the copy (the desktop's
    words kept), with no rollback alarm, whichever side CouchDB's rule made
    the current revision."""
    with _only_the_desktop_meets_both_edits(tmp_path, current) as (desktop, hooked, gate):
        with mounted(desktop, tmp_path / "b", env=hooked) as b:
            wait_for(lambda: (gate / "paused").exists(), "the desktop to start making the conflict copy")
            unmounted = fusevault("unmount", b, passphrase=None)
            assert unmounted.returncode == 0, unmounted.stderr
        (leaves,) = _conflicted_leaves(desktop)  # left unsettled: both edits, as CouchDB ranks them
        assert leaves[0] > leaves[1]  # the side that saved twice is current
        with mounted(desktop, tmp_path / "b") as b:
            (copy,) = wait_for(lambda: _copies(b) and settled(b) and _copies(b),
                               lambda: f"the copy at the next mount: {_mount_log(b)}")
            assert (b / copy).read_bytes() == b"the desktop's words"
            assert (b / "notes.txt").read_bytes() == b"the laptop's later words"
            assert "rollback" not in _mount_log(b)


@pytest.mark.parametrize("current", ["desktop", "laptop"])
def test_a_settled_edit_put_back_as_a_branch_is_a_replay_not_a_second_copy(tmp_path: Path,
                                                                          current: str) -> None:
    """Abuse: the server keeps the desktop's own losing edit (noted by the
    desktop's ledger as a live branch of the conflict: no replay then) and
    puts it back as a new branch once the conflict is settled.  The note ends
    with the settling: a replay, not taken in (no second copy), said.  With
    the desktop's revision current (it saved twice), settling commits the
    laptop's contents on top of it: the ledger has seen a newer state of the
    desktop's than the one put back.  With the laptop's current, settling
    commits nothing on notes.txt: the desktop's edit is still the newest
    state seen from the desktop, and the ledger's note of the leaf the
    settling closed (``closed``) tells the replay."""
    import httpx

    with laptop_and_desktop(tmp_path, ("notes.txt",)) as (server, laptop, a, desktop):
        couch = f"{server.url}/vault"
        with mounted(desktop, tmp_path / "b") as b:
            wait_for(lambda: (b / "notes.txt").read_bytes() == b"as it was" and settled(b),
                     "the desktop's pull")
            server.kill()  # apart from here
            _save(b, b"the desktop's words", twice=current == "desktop")
        _save(a, b"the laptop's later words", twice=current == "laptop")
        server.start()
        wait_for(lambda: settled(a), "the laptop's push")
        assert fusevault("unmount", a, passphrase=None).returncode == 0
        on_server = {doc["_id"]: doc["_rev"] for doc in _server_docs(couch)}
        (old,) = [doc for doc in docs_of(desktop, "node")  # notes.txt, the desktop's edit not pushed
                  if on_server.get(doc["_id"]) not in (None, doc["_rev"])]
        # What the server is given at the push (kept here: once the desktop has
        # closed its leaf, only its history may reach the server).
        revs = replica.revisions(_history(desktop, old["_id"]))
        with mounted(desktop, tmp_path / "b") as b:
            (copy,) = wait_for(lambda: _copies(b) and settled(b) and _copies(b), "the conflict settled")
            rev_id = uuid.uuid4().hex
            replay = {**{k: v for k, v in old.items() if k not in ("_rev", "_revisions")},
                      "_rev": f"{revs['start'] + 1}-{rev_id}",
                      "_revisions": {"start": revs["start"] + 1, "ids": [rev_id, *revs["ids"]]}}
            httpx.post(f"{couch}/_bulk_docs", json={"docs": [replay], "new_edits": False}).raise_for_status()
            wait_for(lambda: "rollback" in _mount_log(b), lambda: f"the replay refused: {_mount_log(b)}")
            wait_for(lambda: settled(b), "the sync to settle")
            assert _copies(b) == [copy]
            assert (b / copy).read_bytes() == b"the desktop's words"
            assert (b / "notes.txt").read_bytes() == b"the laptop's later words"


def _history(vault: Path, doc_id: str) -> list[str]:
    store = LocalStore(vault / "store.sqlite")
    try:
        return replica.current_history(store, doc_id)
    finally:
        store.close()


def _server_docs(couch: str) -> list[dict]:
    with urllib.request.urlopen(f"{couch}/_all_docs?include_docs=true") as reply:
        return [row["doc"] for row in json.load(reply)["rows"]]


def test_a_conflict_copy_made_on_both_devices_at_once_is_one_whole_file(tmp_path: Path) -> None:
    """Both devices meet both edits and make the copy at the same moment
    (each held after it created its copy, before writing it): one copy
    with the loser's bytes on both, no copy of the copy."""
    gates = {side: tmp_path / f"gate-{side}" for side in "ab"}
    hooked = {side: _hooked(gate) for side, gate in gates.items()}
    for gate in gates.values():
        gate.mkdir()
    with laptop_and_desktop(tmp_path, ("notes.txt",)) as (server, laptop, a, desktop):
        with mounted(desktop, tmp_path / "b", env=hooked["b"]) as b:
            wait_for(lambda: (b / "notes.txt").read_bytes() == b"as it was" and settled(b),
                     "the desktop's pull")
            server.kill()  # apart from here
            (a / "notes.txt").write_bytes(b"the laptop's words")
            assert fusevault("unmount", a, passphrase=None).returncode == 0
            (b / "notes.txt").write_bytes(b"the desktop's later words")
            with mounted(laptop, a, env=hooked["a"]):
                server.start()
                wait_for(lambda: all((gate / "paused").exists() for gate in gates.values()),
                         "both devices to start making the conflict copy")
                shown = [name for mnt in (a, b) for name in _copies(mnt) if os.stat(mnt / name)]
                for gate in gates.values():
                    (gate / "go").touch()
                wait_for(lambda: all((gate / "settled").exists() for gate in gates.values()),
                         "both devices to settle")
                wait_for(lambda: len(os.listdir(a)) == 2 and sorted(os.listdir(a)) == sorted(os.listdir(b))
                         and settled(a) and settled(b), lambda: f"agreement: {os.listdir(a)} {os.listdir(b)}")
                for mnt in (a, b):
                    (copy,) = _copies(mnt)
                    assert (mnt / copy).read_bytes() == b"the laptop's words"
                    assert (mnt / "notes.txt").read_bytes() == b"the desktop's later words"
                assert shown == [], "a conflict copy was shown before it held the loser's bytes"


def test_a_backup_buddy_keeps_another_vault_without_its_keys_and_refills_its_server(
        couchdb_url: str, tmp_path: Path) -> None:
    laptop = first_device(couchdb_url, tmp_path)
    with mounted(laptop, tmp_path / "a") as a:
        (a / "thesis.tex").write_bytes(b"chapter one, the only copy")
        wait_for(lambda: settled(a), "alice's push")
    # Zoe's vault keeps alice's, encrypted, in her peer_dir_for_storage.
    zoe = tmp_path / "zoe"
    assert fusevault("init", zoe, "--user", "zoe").returncode == 0
    storage = tmp_path / "kept-for-friends"
    storage.mkdir()
    configured = fusevault("config", "set", "peer_dir_for_storage", storage, "--vault", zoe)
    assert configured.returncode == 0, configured.stderr
    added = fusevault("peer", "add", "alice", couchdb_url, "--store-only", "--vault", zoe)  # her passphrase
    assert added.returncode == 0, added.stderr
    with mounted(zoe, tmp_path / "z") as z:
        wait_for(lambda: settled(z) and sync_status(z)["records_down"] > 0,
                 lambda: f"zoe's copy of alice's vault: {sync_status(z)}")
        kept = storage / "alice"
        assert (kept / "store.sqlite").exists() and list(kept.glob("users/*/own/*.vf"))
        everything = b"".join(p.read_bytes() for p in kept.rglob("*") if p.is_file())
        assert b"chapter one" not in everything and b"thesis" not in everything
        # Zoe's own vault holds nothing of alice's, and zoe's tree shows nothing of it.
        assert [u["username"] for u in docs_of(zoe, "UserDetails")] == ["zoe"]
        assert os.listdir(z) == []
        # Alice's server loses her database: the buddy gives it everything again.
        request = urllib.request.Request(couchdb_url, method="DELETE")
        urllib.request.urlopen(request, timeout=30).read()
        wait_for(lambda: len(record_ids(couchdb_url)) > 0 and settled(z), "the buddy to refill the server")
    phone = new_device(couchdb_url, tmp_path, "phone")
    with mounted(phone, tmp_path / "p") as p:
        assert (p / "thesis.tex").read_bytes() == b"chapter one, the only copy"



def test_a_share_made_on_one_device_opens_on_the_recipients_device(couchdb_url: str, tmp_path: Path) -> None:
    bob_secret = "bob's own passphrase"
    laptop = first_device(couchdb_url, tmp_path)
    as_admin = {"FUSEVAULT_VAULT": str(laptop)}
    for args, secret in ((("user", "add", "bob", "--uid", "2001"), bob_secret),
                         (("group", "add", "team", "--owner", "alice"), None),
                         (("group", "member", "add", "team", "bob", "--perm", "READ,WRITE"), None)):
        done = fusevault(*args, env={**as_admin, "FUSEVAULT_NEW_PASSPHRASE": secret or "unused"})
        assert done.returncode == 0, done.stderr
    bob_id = next(u["_id"] for u in docs_of(laptop, "UserDetails") if u["username"] == "bob")
    with mounted(laptop, tmp_path / "a", "--user", "alice") as a:
        (a / "notes.txt").write_text("hello bob")
        (a / "proj").mkdir()
        (a / "proj" / "plan.txt").write_text("step one\n")
        for path, grantee, perm in ((a / "notes.txt", "bob", "READ"), (a / "proj", "@team", "WRITE")):
            shared = fusevault("share", path, "--with", grantee, "--perm", perm)
            assert shared.returncode == 0, shared.stderr
        wait_for(lambda: settled(a), "the laptop to send the shares")
        # Bob's own device: a replica opened with his passphrase only.
        joined = fusevault("init", tmp_path / "bobs", "--join", couchdb_url, "--user", "bob",
                           passphrase=bob_secret)
        assert joined.returncode == 0, joined.stderr
        bobs_keys = tmp_path / "bobs" / "users" / bob_id / "shared"
        with mounted(tmp_path / "bobs", tmp_path / "b", "--user", "bob", passphrase=bob_secret) as b:
            assert (b / "shared" / "alice" / "notes.txt").read_text() == "hello bob"
            plan = b / "groups" / "team" / "proj" / "plan.txt"
            assert plan.read_text() == "step one\n"
            with open(plan, "a") as out:  # WRITE, through the group
                out.write("step two, by bob\n")
            wait_for(lambda: (a / "proj" / "plan.txt").read_text() == "step one\nstep two, by bob\n",
                     "bob's edit to reach alice's laptop")
            # A file bob makes there has a key only his device sealed (for the group).
            (plan.parent / "bobs.txt").write_text("made on bob's device")
            wait_for(lambda: (a / "proj" / "bobs.txt").read_text() == "made on bob's device",
                     "bob's new file to reach alice's laptop")

            # While both are mounted: a new share shows, a revoked one goes.
            (a / "later.txt").write_text("shared later")
            assert fusevault("share", a / "later.txt", "--with", "bob", "--perm", "READ").returncode == 0
            wait_for(lambda: (b / "shared" / "alice" / "later.txt").read_text() == "shared later",
                     "the new share to reach bob's device")
            assert len(list(bobs_keys.glob("*.vfkey"))) == 2
            assert fusevault("unshare", a / "notes.txt", "--with", "bob").returncode == 0
            wait_for(lambda: not (b / "shared" / "alice" / "notes.txt").exists(),
                     "the revoke to reach bob's device")
            wait_for(lambda: len(list(bobs_keys.glob("*.vfkey"))) == 1, "the revoked key to go")
            assert (b / "shared" / "alice" / "later.txt").read_text() == "shared later"


def test_a_peers_change_of_size_is_seen_whole_with_the_writeback_cache(couchdb_url: str,
                                                                       tmp_path: Path) -> None:
    """A vault with peers keeps the kernel's writeback cache, which keeps its
    own idea of a file's size: a peer's append must not show cut at the old
    size, nor a peer's truncate padded to it; a file open here for writing
    while the peer changes it keeps both versions (ours is saved after theirs)."""
    laptop = first_device(couchdb_url, tmp_path)
    with mounted(laptop, tmp_path / "a") as a:
        (a / "log.txt").write_bytes(b"first line\n" * 300)
        (a / "short.txt").write_bytes(b"long before it was cut\n" * 300)
        (a / "busy.txt").write_bytes(b"as it was")
        wait_for(lambda: settled(a), "the laptop to send its files")
        desktop = new_device(couchdb_url, tmp_path, "desktop")
        with mounted(desktop, tmp_path / "b") as b:
            old_log, old_short = (b / "log.txt").read_bytes(), (b / "short.txt").read_bytes()
            assert old_log == b"first line\n" * 300  # the kernel now holds its size and pages
            with open(b / "log.txt", "rb") as held:
                assert held.read() == old_log
                with open(a / "log.txt", "ab") as f:
                    f.write(b"second line\n" * 500)
                with open(a / "short.txt", "r+b") as f:
                    f.truncate(10)
                whole = old_log + b"second line\n" * 500
                def grown() -> bytes | None:
                    data = (b / "log.txt").read_bytes()
                    return data if data != old_log else None

                seen = wait_for(grown,
                                lambda: f"the append to reach the desktop: {sync_status(b)} "
                                        f"{len((b / 'log.txt').read_bytes())} {_logs()}")
                assert seen == whole  # never cut at the old size
                assert (b / "log.txt").stat().st_size == len(whole)
                held.seek(0)
                assert held.read() == whole  # also through a file open before it came
            wait_for(lambda: (b / "short.txt").read_bytes() != old_short, "the truncate to reach the desktop")
            assert (b / "short.txt").read_bytes() == old_short[:10]
            assert (b / "short.txt").stat().st_size == 10

            down = sync_status(b)["docs_down"]
            with open(b / "busy.txt", "r+b") as mine:
                mine.write(b"the desktop's words, longer than theirs")
                (a / "busy.txt").write_bytes(b"the laptop's")
                wait_for(lambda: sync_status(b)["docs_down"] > down, "the laptop's edit to reach the desktop")
            # Ours is saved after theirs, on both devices; theirs stays in the history.
            ours = b"the desktop's words, longer than theirs"
            assert (b / "busy.txt").read_bytes() == ours
            wait_for(lambda: (a / "busy.txt").read_bytes() == ours, "the desktop's edit to reach the laptop")
            history = fusevault("history", b / "busy.txt", "--json")
            assert history.returncode == 0, history.stderr
            assert len(json.loads(history.stdout)["versions"]) >= 3, history.stdout


def test_a_peers_rewrite_is_read_fresh_and_shows_the_writers_times(couchdb_url: str, tmp_path: Path) -> None:
    """With the writeback cache the kernel keeps the pages, size and times of
    a file it caches: a peer's rewrite (same size) must not be read from the
    old pages, also through a file opened before it came, and ``stat`` shows
    the time the writer's ``stat`` showed, once no program holds the file."""
    laptop = first_device(couchdb_url, tmp_path)
    old, new, newer = b"x" * 10000, b"y" * 10000, b"z" * 10000
    with mounted(laptop, tmp_path / "a") as a:
        (a / "notes.txt").write_bytes(old)
        wait_for(lambda: settled(a), "the laptop to send its file")
        desktop = new_device(couchdb_url, tmp_path, "desktop")
        with mounted(desktop, tmp_path / "b") as b:
            assert (b / "notes.txt").read_bytes() == old  # the kernel now holds its pages and times
            before = os.stat(b / "notes.txt").st_mtime_ns
            with open(b / "notes.txt", "rb") as held:
                assert held.read() == old
                down = sync_status(b)["docs_down"]
                with open(a / "notes.txt", "r+b") as f:
                    f.write(new)
                written = os.stat(a / "notes.txt").st_mtime_ns
                assert written != before
                wait_for(lambda: sync_status(b)["docs_down"] > down, "the rewrite to reach the desktop")
                # The kernel keeps the inode of a file held open, pages and all, whatever its
                # names: only the invalidation drops the old pages.
                wait_for(lambda: os.pread(held.fileno(), len(new) + 1, 0) == new,
                         lambda: f"the old pages to go: {os.pread(held.fileno(), 3, 0)!r}")
                assert (b / "notes.txt").read_bytes() == new
            wait_for(lambda: os.stat(b / "notes.txt").st_mtime_ns == written,
                     lambda: f"the writer's time on the desktop: {os.stat(b / 'notes.txt').st_mtime_ns} "
                             f"!= {written}")
            with open(a / "notes.txt", "r+b") as f:  # and again, with nothing open on the desktop
                f.write(newer)
            written = os.stat(a / "notes.txt").st_mtime_ns
            wait_for(lambda: (b / "notes.txt").read_bytes() == newer, "the second rewrite to come")
            wait_for(lambda: os.stat(b / "notes.txt").st_mtime_ns == written, "the second time to show")
            assert os.stat(b / "notes.txt").st_size == len(newer)


def test_a_peers_edit_is_read_fresh_through_a_handle_whose_blocks_are_cached(couchdb_url: str,
                                                                            tmp_path: Path) -> None:
    """The mount keeps verified blocks a handle read, and reads ahead for a
    sequential reader (vault/files/block_cache.py): a peer's edit in the
    middle of them is read, never the cached blocks, through the same handle
    (its pages dropped from the kernel's cache, so the reads reach the mount)."""
    laptop = first_device(couchdb_url, tmp_path)
    old = bytes(i % 251 for i in range(2 << 20))
    edit_at, edit = 1 << 20, b"the laptop's edit" * 6000
    with mounted(laptop, tmp_path / "a") as a:
        (a / "big.bin").write_bytes(old)
        wait_for(lambda: settled(a), "the laptop to send its file")
        desktop = new_device(couchdb_url, tmp_path, "desktop")
        with mounted(desktop, tmp_path / "b") as b:
            wait_for(lambda: (b / "big.bin").stat().st_size == len(old), "the file to reach the desktop")
            with open(b / "big.bin", "rb") as held:
                os.posix_fadvise(held.fileno(), 0, 0, os.POSIX_FADV_DONTNEED)
                assert held.read() == old  # through the mount: its blocks now cached there
                down = sync_status(b)["docs_down"]
                with open(a / "big.bin", "r+b") as f:
                    f.seek(edit_at)
                    f.write(edit)
                new = old[:edit_at] + edit + old[edit_at + len(edit):]
                wait_for(lambda: sync_status(b)["docs_down"] > down, "the edit to reach the desktop")

                def fresh() -> bool:
                    os.posix_fadvise(held.fileno(), 0, 0, os.POSIX_FADV_DONTNEED)
                    return os.pread(held.fileno(), len(new) + 1, 0) == new

                wait_for(fresh, lambda: f"the edit through the held file: {_logs()}")
            assert (b / "big.bin").read_bytes() == new


def _logs() -> str:
    state = Path(os.environ["FUSEVAULT_STATE_DIR"])
    return "\n".join(p.read_text()[-3000:] for p in state.rglob("*.log"))


def test_the_pull_takes_the_echo_of_its_own_push_without_storing_anything(couchdb_url: str,
                                                                          tmp_path: Path) -> None:
    """What this replica pushed comes back in the peer's changes feed: the
    pull steps over it without a fetch, a thread hop or a commit."""
    import trio

    from fusevault.store.local import LocalStore
    from fusevault.sync.couch_api import CouchDatabase
    from fusevault.sync.replicator import PeerStatus, Replicator
    from fusevault.sync.service import device_of
    from fusevault.vault.format.layout import open_layout

    vault = tmp_path / "vault"
    assert fusevault("init", vault, "--user", "alice").returncode == 0
    store = LocalStore(vault / "store.sqlite")
    taken: list = []

    async def main() -> None:
        db = CouchDatabase(couchdb_url)
        try:
            replicator = Replicator(store, open_layout(vault), device_of(store)["id"], "server", db,
                                    lambda docs, conflicts: taken.append(docs),
                                    PeerStatus("server", couchdb_url))
            await replicator.connect()
            await replicator.push()
            assert replicator.status.docs_up > 0 and replicator.pending_up() == 0
            before = store.db.total_changes
            assert await replicator.pull() is True  # the echo: a batch of changes
            assert store.db.total_changes == before  # nothing stored, not even the checkpoint
            assert replicator.checkpoint["pull"] != 0  # yet stepped over
            assert await replicator.pull() is False
        finally:
            await db.aclose()

    try:
        trio.run(main)
    finally:
        store.close()
    assert taken == []


def test_the_push_lets_the_mounts_requests_pass_before_each_batch(couchdb_url: str, tmp_path: Path,
                                                                  monkeypatch) -> None:
    """Sync yields to the drive's user batch by batch (sync/foreground.py), not once per
    push: before this, a push sent everything pending in one go (a 512 MiB file's 32,768
    records) while fio or a build on the drive waited for the two cores.  Only a backlog
    waits: a small change goes at once, however busy the drive."""
    import trio

    from fusevault.store.local import LocalStore
    from fusevault.sync import replicator as replicator_module
    from fusevault.sync.couch_api import CouchDatabase
    from fusevault.sync.replicator import PeerStatus, Replicator
    from fusevault.sync.service import device_of
    from fusevault.vault.format.layout import open_layout

    monkeypatch.setattr(replicator_module, "CHANGES_BATCH", 2)  # several batches from a new vault
    monkeypatch.setattr(replicator_module, "BACKLOG", 2)  # ... and they are a backlog
    vault = tmp_path / "vault"
    assert fusevault("init", vault, "--user", "alice").returncode == 0
    store = LocalStore(vault / "store.sqlite")
    asked: list[int] = []  # documents sent when each batch asked

    async def main() -> None:
        db = CouchDatabase(couchdb_url)
        try:
            replicator = Replicator(store, open_layout(vault), device_of(store)["id"], "server", db,
                                    lambda docs, conflicts: None, PeerStatus("server", couchdb_url))

            class Busy:  # a drive in use: each batch waits (here: only counted)
                async def quiet(self) -> float:
                    asked.append(replicator.status.docs_up)
                    return 0.5

            replicator.foreground = Busy()  # type: ignore[assignment]
            await replicator.connect()
            documents = replicator.pending_up()
            await replicator.push()
            assert replicator.pending_up() == 0 and replicator.status.docs_up == documents
            assert len(asked) == -(-documents // 2)  # once before each batch of 2
            assert asked == sorted(asked) and asked[-1] < documents
            assert len(asked) >= 2  # a new vault's user, vault and root documents: 2 batches or more
            # A change someone waits for on another device is no backlog: it goes at once.
            asked.clear()
            monkeypatch.setattr(replicator_module, "BACKLOG", 32)
            store.put_many([{"_id": "one-more", "type": "Note"}])
            await replicator.push()
            assert replicator.pending_up() == 0 and asked == []
        finally:
            await db.aclose()

    try:
        trio.run(main)
    finally:
        store.close()


def test_a_peer_added_while_mounted_gets_the_grouped_changes_and_syncs(couchdb_url: str, monkeypatch,
                                                                      tmp_path: Path) -> None:
    """A mount groups metadata commits (renames, removals, chmods ride together:
    tests/mount/test_group_commit.py), with a peer or without; a peer added while it is mounted
    starts syncing, and what was grouped goes out once committed (the window's end; here the
    fsync of the folder, as the window is an hour): the other device sees every change, made
    before and after the peer came.  The pull meeting a grouped change:
    tests/services/test_sync_group_commit.py."""
    monkeypatch.setenv("FUSEVAULT_GROUP_WINDOW", "3600")  # still grouped when the peer comes
    laptop = tmp_path / "laptop"
    assert fusevault("init", laptop, "--user", "alice").returncode == 0
    with mounted(laptop, tmp_path / "a") as a:
        for i in range(6):
            (a / f"f{i}").write_text(f"file {i}")
        os.rename(a / "f0", a / "renamed")
        os.unlink(a / "f1")
        os.chmod(a / "f2", 0o600)
        added = fusevault("peer", "add", "server", couchdb_url, "--vault", laptop, passphrase=None)
        assert added.returncode == 0, added.stderr
        # Reached: what was committed went out; the grouped changes wait for their window (an hour),
        # so ``settled`` (which counts them too) is for after the fsync.
        wait_for(lambda: (peers := _peers(a)) and peers[0]["error"] is None and peers[0]["pending_up"] == 0
                 and peers[0]["last_contact"] is not None,
                 "the mount to reach the peer added while it was mounted")
        assert sync_answer(a)["uncommitted"] > 0  # the scene: changes still grouped when the peer came
        os.rename(a / "f3", a / "after")  # grouped as well
        fsync_dir(a)
        wait_for(lambda: settled(a), "the grouped changes to be sent")
        desktop = new_device(couchdb_url, tmp_path, "desktop")
        with mounted(desktop, tmp_path / "b") as b:
            want = ["after", "f2", "f4", "f5", "renamed"]
            wait_for(lambda: sorted(os.listdir(b)) == want, lambda: f"{sorted(os.listdir(b))} != {want}")
            assert (b / "renamed").read_text() == "file 0"
            assert os.stat(b / "f2").st_mode & 0o777 == 0o600


def _peers(mountpoint: Path) -> list:
    result = fusevault("sync", "status", mountpoint, "--json", passphrase=None)
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)["mounts"][0]["peers"]
