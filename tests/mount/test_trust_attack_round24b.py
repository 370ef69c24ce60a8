r"""Attack round 24b: the fixes of round 23b -- HMAC'd resume files, the watched folder held as one
descriptor, output defused at the boundary (cli/terminal.py, log_lines.py), ``content.entries``
refusing names under a link's own symlinks and keys of another length -- attacked from the sender's,
the link owner's, the dropper's, the link store's and another local user's side.

Real ``fusevault`` commands, real mounts, a real relay with its link store (redis-server,
pouchdb-server), the store writer (tests/adversary.py).  Hole 5 calls ``content.write_local`` (what
``fusevault link get`` runs) directly with manifests the link's owner signs, as round 23b (2) did.

Status: every hole below is fixed and its test passes (every field of a link's list checked up front;
a block refused for that link makes the one item corrupt; ``shown()`` where names are printed and one
line per log record; progress descriptions defused; ``link get`` reaches every folder from the
destination's descriptor with O_NOFOLLOW; a receive's partial file named under ``receive.key`` and made
O_EXCL); docs/SECURITY.md "Attack round 24" says what holds now.

Holes
-----
1. A DROPPED ITEM MISSING ``size`` OR ``sha256``, OR WITH A SYMLINK TARGET THAT IS NO NAME, STAYS ON
   THE SERVER AND IS FETCHED AGAIN AT EVERY RUN.  Round 23b (8) fixed the key's length only.
   ``content.entries`` checks through ``_check_fields`` (content.py:239) a file's mode and time and
   that a symlink's target is a ``str``; not that a file entry has ``size`` and ``sha256``, nor that
   the target encodes as a file name.  ``verified`` reads ``entry["size"]`` / ``entry["sha256"]``
   after the last block (content.py:164): a KeyError; ``_write_drop`` encodes the target with
   ``str_to_name`` (owner.py:293): a lone surrogate (``"x\ud800"``, valid JSON) is a
   UnicodeEncodeError.  Neither is CorruptData, so ``_collect_one`` (owner.py:232) keeps the item:
   "internal error on a dropped item (see the log); it stays on the server".  Seen, all three: three
   ``link collect`` in a row meet it again, the server still holds it; the mount's collector does the
   same every minute, with a traceback in her log, for as many such items as a stranger drops.
   Fix: ``entries`` checks every field any writer reads (file: ``size`` an int >= 0, ``sha256`` 64
   hex, ``blocks`` a list of str; symlink: a target ``str_to_name`` encodes); and ``_take`` turns any
   exception met in one item into CorruptData (discarded), the "stays on the server" path only for
   the vault's own failures.
   Test: test_a_dropped_item_missing_a_field_is_discarded_not_fetched_again_at_every_run
   (no-size, no-sha256, symlink-target-lone-surrogate).

2. ``defused()`` KEEPS THE NEWLINE: A NAME FROM OUTSIDE STILL WRITES LINES OF ITS OWN ON HER TERMINAL
   AND INTO HER MOUNT'S LOG.  Round 23b's holes 3, 7, 9 were fixed at the boundary: standard output
   and the log's lines go through ``encoding.defused`` (encoding.py:47-55), which writes out C0/C1
   controls *but tab and newline*; the commands still print the names raw (``user list``,
   cli/accounts.py:160; ``trash``, cli/history.py:145; the importer's task error, watcher.py:235,
   printed by ``status``, cli/status.py:97, and logged, watcher.py:236).  A vault name may hold any
   byte but "/" and NUL, a user name in the store any text.  Seen: a store writer's user
   ``mallory\nfusevault: wrong passphrase`` prints a line "fusevault: wrong passphrase ..." in
   ``user list``; a stranger's dropped ``invoice\n2026-12-01 09:12:44 UTC     1.2 MiB
   thesis-final.pdf``, once she deletes it, makes ``trash`` list a deleted ``thesis-final.pdf`` she
   never had; a scanner's file name in the watched folder writes ``2026-12-04 09:00:00,000 ERROR
   fusevault.trust: FORGED`` as a line of its own into ``fusevault status`` and into her mount's log
   file (state/logs/mount-*.log): a forged log entry, time and level and all (CWE-117).  Under the
   journal each line gets the real priority prefix, but is a line of its own (JournalFormatter
   splits with ``splitlines()``, systemd.py:60, which also makes U+2028, U+0085, FS/GS/RS real
   newlines before ``defused`` sees them).  ``group list``, ``share list``, ``history`` (author),
   ``sync status`` (peer name) print store names the same way (read, not run).  Also (read, not run):
   ``_OBEYED`` leaves out U+061C ARABIC LETTER MARK, which does what the RLM it covers (U+200F) does.
   Fix: ``shown()`` on every name from outside where it is put into a message (it reprs a name with
   a newline); and in the log formatter, write out line breaks inside a record's message, so that
   one record is one line.
   Tests: test_a_store_writers_username_does_not_write_a_line_of_its_own_to_her_terminal,
   test_a_dropped_name_does_not_write_a_line_of_its_own_to_her_terminal_from_the_trash,
   test_a_watched_file_name_does_not_write_a_line_of_its_own_to_status_or_her_log.

3. ``FUSEVAULT SEND`` WRITES A FILE'S NAME RAW TO HER TERMINAL IN ITS PROGRESS BAR.  ``Sender.stream``
   (send.py:255) makes the task ``f"sending {file.name}"`` without ``shown()``; the progress bar is
   rich on the real standard error (transfer/progress.py), not through cli/terminal.py; rich drops
   BEL, BS, VT, FF and CR but passes ESC.  A name a sender gave (``receive`` and ``link get`` write
   any name but "/" and NUL into her Downloads), sent on to a friend: seen, ``ESC ] 52 ; c ; ...
   ESC \`` (set her clipboard; ST instead of BEL) and erase-line / cursor-up reach her terminal (a
   pty in the test).
   Fix: ``shown(file.name)`` in the task (as receive.py:278 does), and the progress console writing
   through ``defused`` too (``Console(file=Defused(sys.stderr))``).
   Test: test_a_received_name_sent_on_does_not_write_control_sequences_to_her_terminal.

4. A DROPPED ITEM NAMING A BLOCK OF ANOTHER LINK STOPS THE WHOLE DROP BOX AT EVERY RUN.  The link
   store checks that the blocks a version *owns* belong to the box (relay/items.py:236), but the
   owner fetches the blocks the sealed manifest names, which the store cannot see.  A stranger names
   a block of an item of his own (anyone may create items on the store and add blocks to them);
   fetched with her box's read key, the store answers 403 "this read key does not open this block"
   (items.py:308): LinkRefused, a VaultError.  ``_held`` (owner.py:346) turns only LinkGone and
   InvalidInput into CorruptData, so ``_collect_one`` re-raises it (owner.py:230, "the link store or
   the vault away: this box waits for the next run") and the items after it are never reached.
   Seen: a friend's ``link push`` of ``invoice.txt`` after the stranger's item never arrives; every
   ``link collect`` (and the mount's collector, every minute) says "Inbox: this read key does not
   open this block", for good -- round 22b (4)'s promise ("one item's defect leaves it on the server
   and the items after it still arrive") broken with one request.
   Fix: in ``_held``, every answer about one block that is not the store being away (LinkRefused,
   LinkGone, InvalidInput, any 4xx) makes the item CorruptData; only RelayUnavailable and
   RateLimited postpone, and a postponed item should not stop the items after it.
   Test: test_a_dropped_item_naming_another_links_block_does_not_stop_the_box.

5. ``LINK GET --OVERWRITE`` OF A LINK'S NEW VERSION WRITES THROUGH THE SYMLINK ITS OLD VERSION MADE,
   INTO HER ``~/.ssh``.  Round 23b (2)'s fix checks the manifest's own names (no path under a symlink
   *the same list* holds); ``write_local`` still checks each file's folder with ``inside(dest,
   target.parent)`` (content.py:182: inside the destination, not the top, symlinks on disk followed)
   and writes ``temp`` + ``os.replace`` through the path (content.py:203).  Version 1 of the link
   (top ``photos``, new at her home) holds ``photos/l -> ../.ssh`` (``link get`` makes any symlink it
   lists, even out of its folder, unlike ``receive``); version 2 lists only ``photos`` and
   ``photos/l/authorized_keys`` (no dir entry is needed for ``photos/l``).  She refreshes her copy the
   documented way, ``link get LINK --overwrite`` at home: ``photos/l`` resolves to ``~/.ssh``, inside
   her home, and her ``~/.ssh/authorized_keys`` is *replaced* by the link owner's key.  Seen.
   ``--overwrite`` is her consent to replace what is under the link's top, not her ``~/.ssh``.
   Fix: check against the top (``inside(dest / top, target.parent)``); better, reach every folder
   from a descriptor of the top, ``O_NOFOLLOW | O_DIRECTORY`` part by part (as source_paths does), so
   no symlink on disk is followed; and make a link's symlink only when it stays inside its folder,
   as ``receive`` does (output.py ``link_stays_inside`` / ``_resolves_inside``).
   Test: test_link_get_overwrite_does_not_write_through_the_symlink_an_older_version_made.

6. A PARTIAL FILE ANOTHER LOCAL USER PLANTS IN A SHARED OUTPUT FOLDER GETS HER PLAINTEXT, AND BECOMES
   HER RECEIVED FILE.  ``Receiver.one`` opens the partial file ``O_RDWR | O_CREAT | O_NOFOLLOW``
   (receive.py:264), no ``O_EXCL``, and checks only that it is a regular file at least as long as the
   chunks it holds; its name is predictable: ``.NAME.fvpart-<sha256(sid|fid)[:16]>`` (resume.py
   ``partial_path``), the session id is what any ``join`` of the session's name answers (the name is
   on her command line, in ``ps``), the file id is the file's index.  Another local user who writes
   the output folder (a folder a group shares, model (e)) and knows a top-level file's name plants an
   empty file of his at that name, mode 0666, with a second hard link of his own elsewhere.  Seen:
   ``receive`` exits 0, "received incoming/report.txt", and his other link holds her whole plaintext;
   ``report.txt`` *is* his inode (owned by him: he may rewrite her received file later).  As a
   non-root receiver the ``fchmod`` at the end fails (EPERM, an unexpected PermissionError) -- after
   every byte was written into his file.  ``fs.protected_regular`` stops the open only in sticky
   world-writable (=1) or group-writable (=2) folders; a shared folder without the sticky bit is
   never protected (and the sysctl is 0 here).
   Fix: create the partial with ``O_EXCL`` on a first run; on a resume, take an existing one only if it
   is hers (``st_uid``), has one link (``st_nlink == 1``) and is not readable by others; better,
   keep partial files in a private folder of hers (0700) in the output folder's file system.
   Test: test_a_partial_file_planted_by_another_local_user_does_not_get_her_plaintext.

What held
---------
- Resume files (transfer/resume.py): every line is HMAC'd under ``state/receive.key`` (0600; refused
  if not hers, readable by others, or not 32 bytes) and bound to the session id with NUL separators
  (a line is ASCII hex without NUL: no sid/line split ambiguity); a line from another session fails
  its MAC (AlreadyExists: a refusal, never trusted); a file not hers, not 0600, a symlink, fifo or
  socket at the name is refused; a last line without its newline is dropped (an append cut short),
  other truncation only forgets state; a sender's file delivered under a later session's resume
  name is hers and 0600 but its lines fail the MAC (a refusal only).  Two receives starting at once
  read one key (written aside, then ``link``ed into place).  Not pursued: the lines are bound
  neither to the output folder nor to the inode of a claimed top (a relay that gives a new session
  an interrupted session's id lets it write into that session's top folders; needs a cheating
  relay that is also a sender: weak); a run interrupted between ``make_links`` making a chained
  symlink and its second check keeps it, and the resumed run skips it as "made by an earlier run"
  (needs an interrupt at that instant).
- Drop boxes: block ids ``%``, ``x?y``, ``_design%2Fz`` and a 9000-character id are answered
  404/4xx (LinkGone/InvalidInput): the item is discarded and a later drop arrives; a symlink
  target with NUL, an empty one and one of 70000 characters are discarded too (tried as
  parameters of holes 4 and 1, passing); the key's length is checked (32); names under a listed
  symlink and a second top are refused by ``entries``.
- The watched folder (imports/source_paths.py): every look, open, scan and unlink is reached from
  the held descriptor part by part ``O_NOFOLLOW | O_DIRECTORY``; sources are opened ``O_NONBLOCK``
  and read only if ``fstat`` says regular (a fifo swapped in is not waited on); ``remove_if`` looks
  and unlinks through one folder descriptor; ``walk`` is iterative (a deep tree costs O(depth^2)
  opens, no recursion, no descriptor kept open); a hard link in the watched folder to a file
  elsewhere is only unlinked as that name (the file keeps its other name).  Read, not run:
  ``Stamp`` has no ctime (a same-size rewrite with the mtime put back counts as unchanged: only the
  writer's own data is at stake).
- ``--json`` outputs are ``json.dumps`` (every control character escaped); the progress bars of
  ``receive`` and ``link get`` use ``shown``; the passphrase and confirmation prompts hold only her
  own arguments; ``receive`` without ``--vault`` takes the dump folder from the mount's
  ``confirmed.effective`` settings.
"""

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
from conftest import fusevault, mounted, running_relay
from transfer_helpers import receive, sending

from fusevault.crypto import aead
from fusevault.encoding import b64e
from fusevault.errors import VaultError
from fusevault.links import capability, content
from fusevault.links.client import LinkClient
from fusevault.transfer.client import RelayClient
from fusevault.transfer.resume import _tag


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


def test_a_store_writers_username_does_not_write_a_line_of_its_own_to_her_terminal(vault: Path) -> None:
    [her] = adversary.docs(vault, "UserDetails")
    adversary.put(vault, {**her, "_id": "u-planted", "username": "mallory" + FORGED, "uid": 4242})
    users = fusevault("user", "list", "--vault", vault, passphrase=None)
    assert "mallory" in users.stdout, users.stdout + users.stderr
    assert FORGED not in users.stdout, f"a planted name wrote a line of its own: {users.stdout!r}"


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


def test_a_watched_file_name_does_not_write_a_line_of_its_own_to_status_or_her_log(
        vault: Path, tmp_path: Path) -> None:
    from fusevault import paths
    from mount.test_imports import watch

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
        logs = "".join(p.read_text(errors="replace")
                       for p in (paths.state_dir() / "logs").glob("mount-*.log"))
    assert "last error" in status.stdout, status.stdout
    forged_status = "\n" + FAKE_LOG in status.stdout
    forged_log = "\n" + FAKE_LOG in logs
    assert not forged_status and not forged_log, (
        f"the scanner's file name wrote a line of its own: in status {forged_status}, in her mount's "
        f"log {forged_log}: {[line for line in logs.splitlines() if 'FORGED' in line]!r}")


# --- hole 3: `fusevault send` shows a file's name raw in its progress bar


OSC52 = "\x1b]52;c;ZWNobyBvd25lZA==\x1b\\\x1b[2K\x1b[1A"  # ST, not BEL: rich drops BEL, not ESC


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


# --- hole 6: a partial file another local user planted in a shared output folder gets her plaintext


def test_a_partial_file_planted_by_another_local_user_does_not_get_her_plaintext(
        transfer_relay: str, tmp_path: Path) -> None:
    secret = b"the contract, not for mallory\n" * 100
    (tmp_path / "report.txt").write_bytes(secret)
    shared = tmp_path / "incoming"  # a folder a group shares (writable to him, no sticky bit)
    shared.mkdir(mode=0o777)
    shared.chmod(0o777)
    with sending(transfer_relay, tmp_path / "report.txt") as (sender, name, code):
        # Mallory, another local user: the session's name (on her command line, in `ps`) is all a
        # join needs; it tells him the session id.  The file id is its index; the name he knows
        # ("I'll send you report.txt").
        sid = RelayClient(transfer_relay).join(name)["id"]
        planted = shared / f".report.txt.fvpart-{_tag(sid, '0')}"
        planted.write_bytes(b"")
        os.chown(planted, 4242, 4242)
        planted.chmod(0o666)
        his = tmp_path / "mallory-keeps"
        os.link(planted, his)  # his own second name for his own file
        got = receive(transfer_relay, name, code, shared)
        sender.wait(60)
    assert secret not in his.read_bytes(), (
        f"her received plaintext went into a file another user owns and keeps a link to "
        f"(receive exit {got.returncode}: {got.stdout + got.stderr!r})")
