"""Attack round 23b: the fixes of round 22b -- new tops for ``receive`` and ``link get``, ``shown()``
for names from outside, drop boxes that discard what they cannot take, the watched folder reached
one folder at a time, ``receive --vault`` unlocking with her passphrase.

Real ``fusevault`` commands, real mounts, a real relay with its link store (redis-server,
pouchdb-server), the store writer (tests/adversary.py).  Hole 2 calls ``content.write_local`` (what
``fusevault link get`` runs) directly with a manifest the link's owner signs, as round 22b (1) did.

Status: every hole below is fixed and its test passes (cli/terminal.py and log_lines.py defuse what is
printed and logged; content.entries refuses names under a link's own symlinks and short keys; peer add
--store-only unlocks; the watched folder is held as one descriptor; resume files carry an HMAC);
docs/SECURITY.md "Attack round 23" says what holds now.

Holes
-----
1. A SENDER'S FILE IS HIS NEXT SESSION'S RESUME STATE: IT CLAIMS HER ``~/.ssh``.  ``check_new_tops``
   lets a session write into a top-level name the resume file says "an earlier run of this session
   made" (receive.py:233, ``self.state.tops``).  The resume file is ``.fusevault-receive-<tag(sid)>``
   in the output folder (resume.py:41), read as it is (resume.py:49-58: no owner, no mode, no MAC,
   not even whether this program wrote it), and ``tag`` is a plain SHA-256 of the session id, which
   the sender learns when he creates the session.  So a sender creates session 2 first (from a
   second address: the relay allows one open session per address), then sends session 1: one
   hidden file named ``.fusevault-receive-<tag(sid2)>`` whose text is ``fusevault-receive 1 <hex>``
   and ``top <hex of ".ssh">`` -- an ordinary new file, received with the real ``fusevault send`` and
   ``receive``, exit 0.  She then receives session 2 (a folder ``.ssh`` holding ``authorized_keys2``)
   in the same folder, her home: the run finds "its" state (``resuming``), ``.ssh`` is "ours", and
   the key lands in her existing ``~/.ssh/authorized_keys2``, exit 0.  Seen.  Round 22b hole 9 again,
   with one more file.  Any way a file lands in her folder serves as well: a ``link get`` of a link
   whose top is that name, or another local user in a folder he may write (a shared receive
   folder), claiming whatever is there (inferred, not run).
   Fix: the resume file must be one this program wrote for this receiver: authenticate it (a MAC
   under a key kept outside the output folder, e.g. in her state directory, binding sid and tops), or
   keep resume state outside the output folder altogether; at least refuse a resume file not owned
   by her, not 0600, or whose ``top`` names were not made by a run (compare the top's inode / ctime
   recorded at creation).
   Test: test_a_senders_file_cannot_claim_her_existing_folder_for_his_next_session.

2. ``LINK GET`` WRITES THROUGH THE LINK'S OWN SYMLINK INTO HER EXISTING FOLDER.  ``write_local``
   checks each path's folder with ``inside(dest, target.parent)`` (content.py:174): inside the
   destination, not inside the link's top.  The link's owner signs ``photos`` (new at her home, so
   ``check_new_tops`` passes), ``photos/l`` a symlink to ``../.ssh`` (any target is taken for a link:
   ``_check_fields`` checks only that it is text), and ``photos/l/authorized_keys2``: resolved, that
   folder is ``~/.ssh``, inside her home, so the file is written there (content.py:195 ``os.replace``:
   an existing ``authorized_keys`` is *replaced*, her own key gone, no ``--overwrite`` asked: seen
   in a run outside the test).
   Seen: ``~/.ssh/authorized_keys2`` holds the sender's key.  Round 22b hole 1 closed the top name,
   not this; the round-22b "What held" entry ("a symlink out of the destination followed by a file
   through it") holds only when the destination is not her home.
   Fix: check against the top (``inside(dest / top, target.parent)``, as receive's ``make_links``
   does with ``_resolves_inside(output / top_of(name), ...)``); better, open every folder on the way
   ``O_NOFOLLOW`` from a descriptor of the top (as export and source_paths do) and refuse a symlink
   whose text leaves its folder, as receive does.
   Test: test_link_get_does_not_write_through_its_own_symlink_into_her_folder.

3. A STORE WRITER'S USERNAME OR PEER NAME REACHES HER TERMINAL RAW IN ``USER LIST``, ``PEER LIST``.
   ``_print_users`` (cli/accounts.py:160) prints ``row['name']`` from ``accounts.user_rows``
   (services/accounts.py:153, every UserDetails document of the store, checked or not) without
   ``shown()``.  Seen: a planted
   user document named with an OSC 52 (set her clipboard) and an erase-line / cursor-up that
   overwrites the lines before with "fusevault: wrong passphrase" -- printed although the same
   command says the document is malformed and ignored.  ``peer list`` the same with a planted Peers
   document's name (cli/sync.py:165): seen.  ``group list`` (:274, group and member names),
   ``sync status`` (cli/sync.py:196, a peer's name), ``history`` (cli/history.py:108, the author's
   name) and ``share list`` (cli/sharing.py:78-80) print store names the same way (read, not run).
   Fix: ``shown()`` on every name these commands print (or once, in the rows they are built from).
   Tests: test_a_store_writers_username_does_not_write_control_sequences_to_her_terminal,
   test_a_store_writers_peer_name_does_not_write_control_sequences_to_her_terminal.

4. THE WATCHED FOLDER SWAPPED FOR A LINK: A FILE OF HERS ELSEWHERE IS IMPORTED AND DELETED.
   ``source_paths.parent`` opens the watched folder itself by its path, following a link
   (source_paths.py:35: "The watched folder itself may be a link: it is her setting, checked by
   ``settings.check``"), but ``settings.check`` looked at it once, when the watch started
   (watcher.py:168).  Whoever owns the folder the watched one is in (she watches ``alice/`` in the
   scanner account's share) drops ``thesis.txt`` (a name of a file of hers), and while it settles
   moves ``alice/`` aside and puts a link ``alice -> ~/Documents`` in its place.  The pending name is
   looked at, read and, with ``delete_file_from_source``, removed through the link.  Seen: her
   ``Documents/thesis.txt`` is in ``Imported/`` and gone from ``Documents`` within seconds, no
   warning.  The planter needs no right on ``Documents`` (her device deletes as her).  A link to the
   vault folder instead (``settings.check`` refuses it only at the start of a watch) and a scan
   named ``store.sqlite``: seen, "1 new, 1 removed from source", her vault's ``store.sqlite`` is
   deleted, ``fusevault info`` counts "users: 0": her vault is destroyed, as in round 22b hole 8.
   Fix: open the watched folder once per watch, ``O_DIRECTORY`` (after ``settings.check`` of its
   real path), keep that descriptor, and reach everything from it (``dir_fd``); or compare
   ``fstat`` of each open of the path with the checked folder's (dev, ino) and stop the watch when
   it differs.
   Tests: test_the_watched_folder_swapped_for_a_link_does_not_make_her_device_delete_files_elsewhere,
   test_the_watched_folder_swapped_for_a_link_to_the_vault_folder_does_not_destroy_her_vault.

5. A COUCHDB SERVER'S ERROR TEXT REACHES HER TERMINAL RAW IN ``SYNC STATUS``.  ``bulk_docs`` puts
   the server's ``reason`` in the PeerUnavailable it raises as it came (couch_api.py:145); the
   replicator keeps it as the peer's error (replicator.py:187) and ``sync status`` prints it
   (cli/sync.py:200) -- and the mount's log has it too (replicator.py:188).  Seen: the server's OSC 52,
   erase-line and cursor-up on her terminal.  Round 22b's fix (7f99e2c) covered the relay's and the
   link store's texts, not the sync server's.
   Fix: ``shown()`` where the text is taken in (couch_api.py, any field of an answer put in a
   message) and where a peer's error is printed.
   Test: test_a_couchdb_servers_error_text_does_not_write_control_sequences_to_her_terminal.

6. ``PEER ADD --STORE-ONLY`` KEEPS A BUDDY'S STORE WHERE A STORE WRITER SAYS.  ``_storage_dir``
   (cli/sync.py:142) takes ``peer_dir_for_storage`` from her user document when it is ``self_signed``
   -- signed by the key the document itself names -- exactly what round 22b hole 5 was for
   ``receive --vault``.  Seen: the store writer puts his own ``public_sign`` and a folder of his
   choosing in her document and signs it; ``peer add friend URL --store-only`` answers "kept
   encrypted in CHOSEN/friend" and the Peers document (confirmed on this device at once) names it.
   The mount then keeps the buddy's store there (service.py:165, inferred).  Her own older genuine
   body with an older folder passes the same check (a rollback, no forgery).
   Fix: ask for her passphrase and take ``confirmed.load``'s folder, as ``receive --vault`` now does.
   Test: test_peer_add_store_only_does_not_keep_a_buddys_store_where_a_store_writer_says.

7. A DROPPED (OR SENT, OR SHARED) FILE NAME REACHES HER TERMINAL RAW IN ``FUSEVAULT TRASH``.  A vault
   name may hold any byte but ``/`` and NUL (names.py ``problem``); ``trash`` prints a trashed file's
   path as it is (cli/history.py:145).  Seen: a stranger drops ``invoice<ESC ...>`` into her drop
   box; ``link collect`` takes it in (its message is shown safely now); she deletes it; ``fusevault
   trash`` writes his OSC 52 and cursor moves to her terminal.  ``history``, ``restore`` (:123-125)
   and ``export``'s messages print vault paths the same way (read, not run); a WRITE grantee's names
   in her shared folder and a scanner's in the watched folder reach the same commands.
   Fix: ``shown()`` on every vault path the CLI prints.
   Test: test_a_dropped_name_does_not_write_control_sequences_to_her_terminal_from_the_trash.

8. A DROPPED ITEM WITH A SHORT CONTENT KEY STAYS ON THE SERVER AND IS FETCHED AGAIN AT EVERY RUN.
   ``content.entries`` checks that the manifest's ``key`` decodes (content.py:124), not that it is 32
   bytes; the first block is downloaded and ``aead.unseal`` raises the cipher's ValueError, no
   CorruptData, so ``_collect_one`` (owner.py:232) keeps the item: "internal error on a dropped item
   (see the log); it stays on the server".  Seen: three ``link collect`` in a row each meet it again;
   the server still holds it.  The mount's collector does the same every minute, forever: a
   traceback in her log, the box's status showing the error, a block downloaded each time, and as
   many such items as the stranger cares to drop (the box's storage on the server is never freed).
   Round 22b's fix ("_take turns anything wrong in a dropped item into CorruptData") stopped short
   of the key.
   Fix: ``entries`` checks ``len(b64d(key)) == 32``; ``_take`` turns any exception met in one item
   (decryption included) into CorruptData, so the item is discarded; the "stays on the server" path
   only for the vault's own failures.
   Test: test_a_dropped_item_with_a_short_key_is_discarded_not_fetched_again_at_every_run.

9. A FILE NAME IN THE WATCHED FOLDER REACHES HER TERMINAL RAW IN ``FUSEVAULT STATUS``.  An import that
   fails keeps ``f"{location}: {err}"`` as the import task's last error (watcher.py:226, ``_batch``)
   and logs it (:227);
   ``fusevault status`` prints the task's last error as it is (cli/status.py:97).  Whoever writes the
   watched folder names its files (a scanner, model (e)), and can make an import fail: seen, a file
   ``a`` (imported), then a folder ``a`` in its place holding ``scan<ESC ...>`` ("a is in the way: it
   is not a directory"): ``status`` writes his OSC 52 and cursor moves to her terminal.  Round 22b's
   fix covered the drop boxes' task errors (owner.py), not the importer's.
   Fix: ``shown(location)`` in the importer's messages (task and log), or ``shown()`` on every task
   error and alarm text ``status`` prints.
   Test: test_a_watched_file_name_does_not_write_control_sequences_to_her_terminal_from_status.

What held
---------
- Round 22b's fixed holes, re-run on this branch and passing: ``link get`` refuses a top name with
  "/" and a folder of hers as the top, keeps her folder's mode, writes no setuid bit; ``receive``
  at home refuses ``.ssh/authorized_keys2`` from one session; a dropped ``a/b`` neither blocks the
  box nor makes her device forget it.
- Drop boxes: a dropped file's mtime of 2**63-1 or -2**63 is taken (kept, shown by ``stat``) and
  breaks neither the folder listing nor her other files; an item with a path of two parts, no
  entries, or blocks the store lacks is discarded and the items after it arrive.
- ``receive`` (read, not run): within one session, a file offered under the session's own resume file
  name is refused (the resume file is saved in the handshake, before the list arrives, so
  ``check_new_tops`` finds it); a partial file a sender planted (``.NAME.fvpart-TAG``) only fails the
  whole file's SHA-256; the resume file is appended ``O_NOFOLLOW``; fusevault folds no name (no
  Unicode normalisation, no case folding anywhere), and the top check asks the same file system
  the writes go to, so names differing by normalisation or case are judged the same way by both.
- The relay keys its one-session-per-address rule on the peer address (a forwarded header only
  from ``--trusted-proxy``): hole 1 needs a second address, which any attacker has.
- ``shown()`` is ``str.isprintable`` or repr: C0 and C1 controls, bidi overrides and
  surrogate-escaped bytes are all escaped; the progress bars render no rich markup
  (``markup=False``); the trust alarms quote names with ``!r``.
- The watched folder: a link *inside* it (round 22b hole 8) is not followed (``source_paths``); a file
  removed before it settles is forgotten (a scan deleted in place, then the folder swapped, imported
  nothing); ``settings.check`` at the start of a watch refuses the vault folder behind a link.
- Settings read without a key: the passphrase TTL and the import settings come from
  ``confirmed.load`` (agent/sessions.py, fs/personal.py, watcher.py); ``cmd_watch`` uses the user
  document only to see that a folder is set (a store writer can make it refuse to start: a denial,
  never another folder); ``receive`` without ``--vault`` asks a mount on her own control socket
  (another user's personal mount cannot answer it, paths.py ``socket_of``).
"""

from __future__ import annotations

import hashlib
import json
import os
import time
import uuid
from pathlib import Path

import adversary
import pytest
import redis
from conftest import fusevault, mounted, running_relay
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from transfer_helpers import receive, sending

from fusevault.crypto import aead
from fusevault.crypto.signing import sign_doc
from fusevault.encoding import b64e, str_to_name
from fusevault.errors import VaultError
from fusevault.links import capability, content
from fusevault.links.client import LinkClient
from fusevault.relay import keys as relay_keys
from fusevault.transfer.resume import HEADER, _tag

# --- hole 1: a file a sender sends is a resume file of his next session, claiming her ~/.ssh


def test_a_senders_file_cannot_claim_her_existing_folder_for_his_next_session(transfer_relay: str,
                                                                             redis_url: str,
                                                                             tmp_path: Path) -> None:
    home = tmp_path / "home"
    (home / ".ssh").mkdir(parents=True, mode=0o700)
    db = redis.Redis.from_url(redis_url)
    # Session 2 first (the sender learns its id when he creates it): a folder named .ssh holding
    # authorized_keys2, sent with the real `fusevault send`.
    two = tmp_path / "two" / ".ssh"
    two.mkdir(parents=True)
    (two / "authorized_keys2").write_text("ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIHNlbmRlcidzIGtleQ sender\n")
    with sending(transfer_relay, two) as (sender2, name2, code2):
        sid2 = db.get(relay_keys.session_name(name2)).decode()  # the relay's answer to his create
        db.delete(relay_keys.created_sessions("127.0.0.1"))  # his second address
        # Session 1: one ordinary-looking file whose name is session 2's resume file, its text
        # "this session already made .ssh".
        one = tmp_path / "one" / f".fusevault-receive-{_tag(sid2)}"
        one.parent.mkdir()
        one.write_text(f"{HEADER} {'00' * 32}\ntop {str_to_name('.ssh').hex()}\n")
        with sending(transfer_relay, one) as (sender1, name1, code1):
            first = receive(transfer_relay, name1, code1, home)
            sender1.wait(30)
        assert first.returncode == 0, first.stderr
        # She receives his second session at home, as she did the first.
        second = receive(transfer_relay, name2, code2, home)
        # Refused, so the sender's session stays open for another try (--output): `sending` ends it.
    assert not (home / ".ssh" / "authorized_keys2").exists(), (
        f"session 2 wrote into her existing ~/.ssh, claimed by a file session 1 delivered: {second.stdout!r}")
    assert second.returncode == 11, second.stderr


# --- hole 2: `link get` writes through the link's own symlink into her existing folder


class _Blocks:
    """What a link store serves for a manifest the link's owner made (as round 22b's)."""

    def __init__(self, dek: bytes, item: str, files: dict[int, bytes]) -> None:
        self.sealed = {f"b{i}": capability.seal_block(dek, item, i, 0, data) for i, data in files.items()}

    def block(self, block_id: str, read_key: bytes) -> bytes:
        return self.sealed[block_id]


def test_link_get_does_not_write_through_its_own_symlink_into_her_folder(tmp_path: Path) -> None:
    home = tmp_path / "home"
    (home / ".ssh").mkdir(parents=True, mode=0o700)
    key = b"ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIHNlbmRlcidzIGtleQ the link's sender\n"
    dek = aead.new_key()
    # A link of a folder "photos" (new at her home), holding a symlink "l" -> "../.ssh" and a
    # file "l/authorized_keys2": every name one safe part, each under the top, none twice.
    manifest = {"name": "photos", "key": b64e(dek), "entries": [
        {"path": "photos", "type": "dir", "mode": 0o755, "mtime_ns": 0},
        {"path": "photos/l", "type": "symlink", "mode": 0o777, "mtime_ns": 0, "target": "../.ssh"},
        {"path": "photos/l/authorized_keys2", "type": "file", "mode": 0o600, "mtime_ns": 0,
         "size": len(key), "sha256": hashlib.sha256(key).hexdigest(), "blocks": ["b2"]},
    ]}
    try:  # `fusevault link get LINK`, run at home (cli/links.py)
        content.write_local(_Blocks(dek, "item", {2: key}), b"r" * 32, "item", manifest, home)  # type: ignore[arg-type]
    except VaultError:
        pass  # refusing the link is fine
    assert not (home / ".ssh" / "authorized_keys2").exists(), (
        "`link get` at home wrote the sender's key into her ~/.ssh through the link's own symlink")


# --- hole 3: a name a store writer plants reaches her terminal raw in `user list`

ESCAPES = "\x1b]52;c;ZWNobyBvd25lZA==\x07\x1b[2K\r\x1b[1Afusevault: wrong passphrase"


def test_a_store_writers_username_does_not_write_control_sequences_to_her_terminal(
        vault: Path) -> None:
    [her] = adversary.docs(vault, "UserDetails")
    # The store writer: a user document of his own, named with escapes.
    adversary.put(vault, {**her, "_id": "u-planted", "username": "mallory" + ESCAPES, "uid": 4242})
    users = fusevault("user", "list", "--vault", vault, passphrase=None)
    shown = users.stdout + users.stderr
    assert "mallory" in shown, shown
    assert "\x1b" not in shown and "\x07" not in shown, f"a planted name reached her terminal raw: {shown!r}"


# --- hole 4: the watched folder swapped for a link after settings.check: her files elsewhere deleted


def test_the_watched_folder_swapped_for_a_link_does_not_make_her_device_delete_files_elsewhere(
        vault: Path, tmp_path: Path) -> None:
    from mount.test_imports import watch

    # She watches her folder in the scanner's share (the scanner account owns /srv/scans and
    # writes into alice/); her own work is in Documents.
    share, documents = tmp_path / "scans", tmp_path / "Documents"
    inbox = share / "alice"
    inbox.mkdir(parents=True)
    documents.mkdir()
    (documents / "thesis.txt").write_text("chapter one\n")
    with mounted(vault, tmp_path / "mnt") as mnt:
        watch(mnt, inbox, settle=1.5, delete_file_from_source="on")
        time.sleep(2)  # the watch is live
        # The scanner: a scan named like her file, then at once his folder alice/ becomes a link.
        (inbox / "thesis.txt").write_text("a scan\n")
        time.sleep(0.3)  # reported, pending for its settle time
        inbox.rename(share / "done")  # his folder moved aside, the scan in it
        os.symlink(documents, inbox)
        deadline = time.monotonic() + 12
        while time.monotonic() < deadline and (documents / "thesis.txt").exists():
            time.sleep(0.2)
        imported = sorted(str(p.relative_to(mnt)) for p in mnt.rglob("*"))
    assert (documents / "thesis.txt").exists(), (
        f"her {documents}/thesis.txt, outside the watched folder, was imported and deleted; "
        f"the vault now holds {imported}")


# --- hole 5: a CouchDB server's error text reaches her terminal raw in `sync status`


class _HostileCouch:
    """A CouchDB server (attacker model a) that takes nothing and says why in its own words."""

    def __init__(self, reason: str) -> None:
        import http.server
        import threading

        class Handler(http.server.BaseHTTPRequestHandler):
            def log_message(self, *args) -> None:
                pass

            def _answer(self, code: int, body: object) -> None:
                data = json.dumps(body).encode()
                self.send_response(code)
                self.send_header("content-type", "application/json")
                self.send_header("content-length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def do_GET(self) -> None:
                path = self.path.split("?")[0]
                if path == "/vault":
                    self._answer(200, {"db_name": "vault", "update_seq": "0"})
                elif path == "/vault/_changes":
                    self._answer(200, {"results": [], "last_seq": "0"})
                else:
                    self._answer(404, {"error": "not_found", "reason": "missing"})

            def do_PUT(self) -> None:
                self.rfile.read(int(self.headers.get("content-length") or 0))
                self._answer(201, {"ok": True})

            def do_POST(self) -> None:
                body = json.loads(self.rfile.read(int(self.headers.get("content-length") or 0)) or b"{}")
                path = self.path.split("?")[0]
                if path == "/vault/_revs_diff":
                    self._answer(200, {i: {"missing": revs} for i, revs in body.items()})
                elif path == "/vault/_bulk_docs":
                    self._answer(201, [{"id": d.get("_id"), "error": "forbidden", "reason": reason}
                                       for d in body.get("docs", [])])
                else:
                    self._answer(200, {"results": []})

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.port = self.server.server_address[1]
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def test_a_couchdb_servers_error_text_does_not_write_control_sequences_to_her_terminal(
        vault: Path, tmp_path: Path) -> None:
    server = _HostileCouch(ESCAPES)
    try:
        added = fusevault("peer", "add", "server", f"http://127.0.0.1:{server.port}/vault", "--offline",
                          "--vault", vault, passphrase=None)
        assert added.returncode == 0, added.stderr
        with mounted(vault, tmp_path / "mnt") as mnt:
            (mnt / "notes.txt").write_text("hello\n")
            deadline = time.monotonic() + 15
            while True:
                status = fusevault("sync", "status", mnt, passphrase=None)
                if "error" in status.stdout or time.monotonic() > deadline:
                    break
                time.sleep(0.5)
    finally:
        server.close()
    assert "error" in status.stdout, status.stdout + status.stderr
    shown = status.stdout + status.stderr
    assert "\x1b" not in shown and "\x07" not in shown, f"the server's text reached her terminal: {shown!r}"


# --- hole 6: `peer add --store-only` keeps a buddy's store where a store writer says


def test_peer_add_store_only_does_not_keep_a_buddys_store_where_a_store_writer_says(
        vault: Path, tmp_path: Path) -> None:
    kept, chosen = tmp_path / "kept", tmp_path / "chosen"
    kept.mkdir()
    chosen.mkdir()
    with mounted(vault, tmp_path / "mnt") as mnt:
        result = fusevault("config", "set", "peer_dir_for_storage", kept, "--mount", mnt, passphrase=None)
        assert result.returncode == 0, result.stderr
    [her] = adversary.docs(vault, "UserDetails")
    assert her["peer_dir_for_storage"] == str(kept)
    # The store writer: her user document, its signing key his, its folder his choice, signed by him.
    his = Ed25519PrivateKey.generate()
    forged = {**her, "peer_dir_for_storage": str(chosen),
              "public_sign": b64e(his.public_key().public_bytes_raw())}
    adversary.put(vault, sign_doc(her["_id"], his, forged))
    added = fusevault("peer", "add", "friend", "http://127.0.0.1:9/friend", "--store-only", "--user", "alice",
                      "--offline", "--vault", vault)
    [peer] = adversary.docs(vault, "Peers") or [{}]
    assert str(chosen) not in str(peer.get("path_to_dump_chunks")), (
        f"her buddy's store is kept in {peer.get('path_to_dump_chunks')}, the folder the store writer's "
        f"self-signed document named: {added.stdout!r}")
    # Fixed (cli/sync.py ``_storage_dir``): her key, whose pinned keys refuse the forged document.
    assert added.returncode == 5 and "do not match" in added.stderr, added.stderr


# --- drop boxes


@pytest.fixture(scope="module")
def relay(redis_url: str, couchdb_server: str):
    """A relay with its link store (one process for the module)."""
    with running_relay(redis_url, "--couchdb", f"{couchdb_server}/links{uuid.uuid4().hex[:8]}") as (_, url):
        yield url


def _drop(drop: str, tmp_path: Path, change: dict, name: str | None = None, key: str | None = None) -> None:
    """What anyone holding the drop link sends: his own file, its entry's fields changed."""
    link = capability.parse(drop)
    (tmp_path / "junk.txt").write_text("junk\n")
    with LinkClient(link.server) as client:
        manifest, blocks = content.upload(client, link.item, link.first,
                                          content.local_sources(tmp_path / "junk.txt"))
        manifest = {**manifest, "name": name or manifest["name"], "key": key or manifest["key"],
                    "entries": [{**manifest["entries"][0], **change}]}
        client.add_version(link.item, link.first, {**capability.seal_drop(link, manifest), "blocks": blocks})


# --- hole 7: a dropped file's name reaches her terminal raw in `fusevault trash`


def test_a_dropped_name_does_not_write_control_sequences_to_her_terminal_from_the_trash(
        relay: str, vault: Path, tmp_path: Path) -> None:
    name = "invoice" + ESCAPES
    with mounted(vault, tmp_path / "mnt") as mnt:
        drop = fusevault("link", "create", mnt / "Inbox", "--append", "--relay", relay).stdout.strip()
        _drop(drop, tmp_path, {"path": name}, name)
        collected = fusevault("link", "collect", cwd=mnt)
        assert "took in 1" in collected.stdout, collected.stdout + collected.stderr
        [arrived] = os.listdir(mnt / "Inbox")
        os.unlink(mnt / "Inbox" / arrived)  # she throws the junk away
        trash = fusevault("trash", mnt, passphrase=None)
    shown = trash.stdout + trash.stderr
    assert "invoice" in shown, shown
    assert "\x1b" not in shown and "\x07" not in shown, f"`trash` printed the dropped name raw: {shown!r}"


# --- hole 8: a dropped item with a content key of the wrong length stays on the server for good


def test_a_dropped_item_with_a_short_key_is_discarded_not_fetched_again_at_every_run(
        relay: str, vault: Path, tmp_path: Path) -> None:
    with mounted(vault, tmp_path / "mnt") as mnt:
        drop = fusevault("link", "create", mnt / "Inbox", "--append", "--relay", relay).stdout.strip()
        _drop(drop, tmp_path, {}, key=b64e(b"short"))
        runs = [fusevault("link", "collect", cwd=mnt) for _ in range(3)]
        link = capability.parse(drop)
        [record] = [r for r in json.loads(fusevault("link", "list", "--json", cwd=mnt).stdout)
                    if r["item"] == link.item] or [{}]
    said = [r.stderr for r in runs]
    assert not said[1] and not said[2], (
        f"the stranger's item is neither taken nor discarded: every collect meets it again: {said!r}; "
        f"the server still holds {record.get('versions', record)}")


# --- hole 9: a file name in the watched folder reaches her terminal raw in `fusevault status`


def test_a_watched_file_name_does_not_write_control_sequences_to_her_terminal_from_status(
        vault: Path, tmp_path: Path) -> None:
    from mount.test_imports import watch

    inbox = tmp_path / "inbox"
    inbox.mkdir()
    with mounted(vault, tmp_path / "mnt") as mnt:
        watch(mnt, inbox, settle=0.3)
        # Whoever writes the watched folder (a scanner): a file "a", imported; then a folder "a"
        # in its place holding a file named with escapes: its import fails ("a" is a file there).
        (inbox / "a").write_text("one\n")
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline and not (mnt / "Imported" / "a").exists():
            time.sleep(0.2)
        (inbox / "a").unlink()
        (inbox / "a").mkdir()
        (inbox / "a" / ("scan" + ESCAPES)).write_text("two\n")
        deadline = time.monotonic() + 10
        while True:
            status = fusevault("status", cwd=mnt)
            if "last error" in status.stdout or time.monotonic() > deadline:
                break
            time.sleep(0.3)
    assert "last error" in status.stdout, status.stdout
    shown = status.stdout + status.stderr
    assert "\x1b" not in shown and "\x07" not in shown, f"`status` printed the scanner's name raw: {shown!r}"


def test_the_watched_folder_swapped_for_a_link_to_the_vault_folder_does_not_destroy_her_vault(
        vault: Path, tmp_path: Path) -> None:
    from mount.test_imports import watch

    share = tmp_path / "scans"
    inbox = share / "alice"
    inbox.mkdir(parents=True)
    with mounted(vault, tmp_path / "mnt") as mnt:
        (mnt / "notes.txt").write_text("precious\n")
        watch(mnt, inbox, settle=1.5, delete_file_from_source="on")
        time.sleep(2)  # the watch is live
        # The scanner: a scan named store.sqlite, then his folder alice/ becomes a link to her vault.
        (inbox / "store.sqlite").write_text("a scan\n")
        time.sleep(0.3)
        inbox.rename(share / "done")
        os.symlink(vault, inbox)
        deadline = time.monotonic() + 12
        while time.monotonic() < deadline and (vault / "store.sqlite").exists():
            time.sleep(0.2)
        gone = not (vault / "store.sqlite").exists()
        task = fusevault("status", cwd=mnt).stdout
    again = fusevault("info", vault, passphrase=None)
    assert not gone, (
        f"the import deleted her vault's store.sqlite through the swapped folder; status: {task[-300:]!r}; "
        f"`fusevault info` now says {again.stdout + again.stderr!r}")


def test_a_store_writers_peer_name_does_not_write_control_sequences_to_her_terminal(vault: Path) -> None:
    added = fusevault("peer", "add", "buddy", "http://127.0.0.1:9/vault", "--offline", "--vault", vault,
                      passphrase=None)
    assert added.returncode == 0, added.stderr
    [real] = adversary.docs(vault, "Peers")
    # The store writer: a Peers document of his own beside hers, named with escapes.
    adversary.put(vault, {**{k: v for k, v in real.items() if k != "_rev"}, "_id": "0" * 32,
                          "name": "buddy" + ESCAPES})
    listed = fusevault("peer", "list", "--vault", vault, passphrase=None)
    shown = listed.stdout + listed.stderr
    assert shown.count("buddy") >= 2, shown
    assert "\x1b" not in shown and "\x07" not in shown, f"a planted peer name reached her terminal: {shown!r}"
