"""Attack round 22b: the edges no round reached yet -- capability links (``link get``, drop boxes and
``link collect``), send / receive, export / import, conflict copies, the dump folder, the unit file.

Real mounts, the real ``fusevault`` command, a real relay with its link store (redis-server,
pouchdb-server), the store writer (tests/adversary.py).  Holes 1 and 2 call ``content.write_local``
(what ``fusevault link get`` runs, cli/links.py:124) directly with a manifest the link's owner signs,
as round 17 (4) did; the rest go through the commands.

Status: every hole below is fixed and its test passes (content.entries/write_local and
output.check_new_tops; encoding.shown; links/owner.py and client.versions; imports/source_paths.py;
receive --vault unlocks; authorship.leaf_ok judges a branch with its names); docs/SECURITY.md "Attack
round 22" says what holds now.

Holes
-----
1. ``LINK GET`` WRITES INTO HER EXISTING FOLDERS AND CHANGES THEIR MODES.  Whoever sends her a link
   (its owner signs the manifest; nobody checks what he puts in it) decides its top name, and
   ``link get`` writes into the current folder by default, so at home.
   (a) The top name may be a path: ``content.entries`` checks each entry with ``safe_target``
   (no ``..``, nothing absolute) and that it is the top or under it (content.py:114,122-123), never
   that the top is ONE name.  A link of one file named ``.ssh/authorized_keys2`` is written into
   her existing ``~/.ssh`` (no such file there yet, so no ``--overwrite`` is asked): seen.
   OpenSSH's default ``AuthorizedKeysFile`` reads ``.ssh/authorized_keys2``: the sender logs in
   as her.  ``.config/autostart/x.desktop``, ``.local/bin/ls`` work the same way (inferred).
   (b) A folder entry that exists already never needs ``--overwrite`` (content.py:158-160 checks
   only entries that are not folders), ``mkdir_inside`` takes it as made (content.py:165,
   output.py:63-65), and the last loop gives it the link's mode and times (content.py:189-190,
   ``& 0o7777``: sticky, setgid and world-writable allowed).  Seen: her ``~/.ssh`` (0700) becomes
   1777: every local user may now create files in it, and sshd's StrictModes refuses her own key
   logins; a top folder named ``bin`` made world-writable puts other users' programs on her PATH
   (inferred).  Round 17 (4) closed (b) only through the sender's own symlink.
   Fix: the top name is one name (``names.valid``, no ``/``), refused otherwise; a folder entry
   that exists before the fetch is refused without ``--overwrite`` (or keeps its own mode); modes
   are ``& 0o777`` and only for what the fetch made.  The browser page should refuse the same.
   Tests: test_a_links_top_name_is_one_name_not_a_path_into_her_folders,
   test_link_get_does_not_chmod_a_folder_of_hers_that_is_already_there.

2. ``LINK GET`` WRITES SETUID AND SETGID FILES.  A file entry's mode is applied ``& 0o7777``
   (content.py:203).  Seen: a 6755 file arrives 6755 (as root: a setuid-root program from a
   stranger's link; as her: a program any local user runs with her uid, a file mode 4755 in a
   folder others can reach).  ``export`` strips exactly these bits (exporting.py:223-225,
   SECURITY.md "Export writes plaintext where you ask, never with a setuid, setgid or sticky
   bit"); a receive never takes a mode from the sender at all (receive.py:272).
   Fix: ``& SAFE_MODE_BITS`` (0o777) for files, folders and in ``_write_file``.
   Test: test_link_get_writes_no_setuid_or_setgid_file.

3. ANYONE WITH HER DROP LINK TAKES HER MOUNT DOWN, AT EVERY MOUNT.  A dropped item is sealed to her
   box key by the dropper, who writes its manifest: ``content.entries`` (content.py:108-129) checks
   names, kinds and that ``blocks`` is a list, not ``mode`` or ``mtime_ns``.  ``_write_drop`` does
   ``int(entry["mode"])`` (owner.py:281): a mode of ``"rw-r--r--"`` raises ValueError, which
   ``_collect_one`` (owner.py:220, CorruptData only) and ``collect`` (owner.py:208, VaultError) do
   not catch; the mount's own collector (``collect_periodically``, owner.py:342, VaultError only;
   started in the session's nursery, agent/sessions.py:71, every DROPS_EVERY = 60 s) lets it out
   and the mount server ends.  Seen: 60 s after the drop the mount is gone (``fusevault status``:
   "no vault is mounted"), and a program still writing to the mount point writes plaintext into
   the empty folder under it; ``fusevault link collect`` answers "internal error".  The item is
   never discarded (the server still holds it), so every later mount should die the same way a
   minute after unlocking (inferred, not waited for).  A symlink entry without ``target``, a huge
   ``mtime_ns`` are likely the same (not tried).
   Whoever runs the link store needs not even a drop: answering ``{}`` (HTTP 200) to the list of
   versions, ``LinkClient.versions`` raises KeyError (client.py:55, ``["versions"]``; a list
   without ``deleted`` fails at owner.py:216 the same way), and the mount is gone a minute later:
   seen.  A proxy in front of the store that answers a 200 page of its own would do the same.
   Fix: ``content.entries`` checks every field it will use (mode and mtime_ns ints in range,
   target a string); ``_take`` turns anything wrong in a dropped item into CorruptData; the link
   client turns any answer it cannot read into a VaultError; the collector catches Exception per
   item and per run.
   Tests: test_a_strangers_dropped_item_does_not_take_her_mount_down,
   test_a_link_store_answering_nonsense_does_not_take_her_mount_down (each waits up to 75 s: the
   collector's period).

4. ONE DROPPED ITEM STOPS HER DROP BOX FOR GOOD, AND HER DEVICE FORGETS THE BOX.  The dropper names
   his item ``a/b``: each part is a safe name, so ``content.entries`` takes it (content.py:122,
   ``safe_target`` of a relative path); it is written under the hidden ``.fvdrop-VID``, its final
   name ``a/b`` saved in the link's record as pending (owner.py:254-256), then the rename refuses
   ``a/b`` with InvalidArgument (namespace.py:226, access.py:72), an FsError, not the CorruptData
   that discards garbage (owner.py:220): the loop ends there and no later drop of the box is
   taken in (SECURITY.md: "garbage sent with the link cannot block the drops after it").  Worse,
   the record now carries the pending name ``a/b``, so ``load_records`` refuses her own record
   (link_records.py:63-67, a warning in the log): from then on ``link collect`` says "took in 0"
   with exit 0, ``link list`` says "no links", ``link revoke ID`` "you made no such link" -- the
   box stays open on the server, taking drops nobody collects, and she cannot revoke it.  A symlink
   entry with a file entry under it (``make_dirs`` raises Exists, placing.py:80) blocks the box the
   same way (inferred, not tried).
   Fix: the final name is one name (``names.check`` on ``found[0]["path"]``: no "/", else
   CorruptData) before anything is written; any FsError of one item discards it like CorruptData;
   a record with a bad pending name drops that entry, never the whole record.
   Tests: test_a_strangers_dropped_item_named_a_slash_b_does_not_block_the_drops_after_it,
   test_a_strangers_dropped_item_does_not_make_her_device_forget_her_drop_box.

5. ``RECEIVE --VAULT`` LANDS FILES WHERE A STORE WRITER SAYS.  Without a mount, the folder a receive
   writes into is her user document's ``target_dir_to_dump`` when that document is ``self_signed``
   (cli/transfer.py:210-230): signed by the key the document itself names.  A writer of the vault
   folder replaces ``public_sign`` with his own key, sets the folder, signs: it passes.  Seen: the
   file a sender sends lands in the folder he chose (made with ``mkdir -p`` if missing,
   output.py:43-49 and receive.py:82), e.g. ``~/.config/autostart`` (a ``.desktop`` file runs at
   her next login) or, for root, ``/etc/cron.d``; receive exits 0.  No forgery is even needed to
   roll it back: her own older genuine body with an older folder passes the same check.  This is
   what confirmed.py's rule exists for ("every reader takes them from here, never from the
   document directly", confirmed.py:4-6: signed with her own key, the folder one this device
   confirmed); ``receive --vault`` is the one reader that does not.  ``peer add --store-only``
   takes ``peer_dir_for_storage`` the same way (cli/sync.py:142; not tried, and there the folder
   is printed back).
   Fix: ``receive --vault`` asks for her passphrase and takes ``confirmed.load``'s folder, or
   uses no default folder (the current one) when it has no key.
   Test: test_receive_with_vault_does_not_land_files_where_a_store_writer_says.

6. A SENDER'S OR DROPPER'S FILE NAMES REACH HER TERMINAL RAW.  ``receive --list`` shows the sender's
   names through ``_shown`` ("Text from the sender, safe for a terminal", receive.py:394), but
   ``received PATH`` (receive.py:289), ``resuming NAME`` (:264), ``received PATH -> TARGET``
   (output.py:102) and every AlreadyExists/CorruptData message print them as they came; a drop
   box's errors (owner.py:220-222 "... discarded (NAME did not arrive intact)") are printed by
   ``link collect`` (cli/links.py:189) and shown by ``fusevault status`` (the task's last error)
   raw.  Seen: ESC ] 52 (set her clipboard, on terminals that allow it), ESC [2K and a
   cursor-up that overwrite what was printed with a line of the sender's ("fusevault: wrong
   code"), BEL: all on her terminal from a file name any sender can give, or from a stranger with
   her drop link.  ``link get`` prints ``fetched TOP`` with the link's own top name
   (cli/links.py:126; read, not tried); ``user list`` prints a store writer's planted username
   the same way (seen, outside this round's focus, not tested).
   Fix: one ``shown()`` for every name from outside (repr when not printable), used by every
   message and the progress lines.
   Tests: test_a_senders_file_name_does_not_write_control_sequences_to_her_terminal,
   test_a_strangers_dropped_name_does_not_write_control_sequences_to_her_terminal.

7. A WRITE GRANTEE MOVES HER FILE INTO ANY FOLDER OF HERS THROUGH A CONCURRENT BRANCH, AND HER DEVICE
   SEALS ITS KEY TO THAT FOLDER'S READERS.  bob holds WRITE on her folder ``team`` only; carol holds
   READ on her folder ``public`` only.  bob runs the server (or writes store.sqlite) and serves a
   sibling of her current node revision of ``team/plan.txt``: her sealed attributes under the DEK his
   key file opens, the head and manifest of her *first* version, the name ``public/plan.txt``,
   signed by him.  Settling the conflict (conflicts.py ``_settle_one``), ``leaf_ok`` judges the
   branch by WRITE where the file sits now (authorship.py:450-451, ``links=None``: "its names are
   not what is judged"), which bob has; her contents descend from his head, so rule 3 keeps her
   contents with *his* names (conflicts.py:215, ``return newer, older.links``), and ``_adopt``
   relinks the node there (conflicts.py:331, ``relink``: not judged) and commits the move as her
   revision (signed by her).  A writer's own node document naming a folder he does not write is
   refused (``may_write``: "every folder a new link puts it in"); this path never asks.  Seen:
   ``team`` is empty, ``public`` holds plan.txt with her final text, no alarm; at her next unlock
   her device seals the file's key to carol (``users/<carol>/shared/<alice>_<fid>.vfkey``): bob
   disclosed a file of hers to someone she never shared it with, and the move is signed in her name.
   The same branch with no names at all (``links: []``) deletes her file past the trash: her
   device commits it ``delete: true``, ``trash`` says "the trash is empty", ``history`` of its
   path "neither in the vault nor in its trash", no alarm (a delete through a mount puts a file in
   its owner's trash).  It can also rename it (the relink only skips a name taken; not tried).
   Tried first: the same branch with *her* current head (rule 2, his ctime later): the adopted
   revision is judged and refused ("holds no WRITE on it", an alarm); only rule 3 is open.
   Fix: ``leaf_ok`` judges a writer's branch with its links (``may_write(..., links, ...)``, as
   any writer's node document), or rule 3 takes a writer's names only where he may write both the
   folder left and the folder entered; ``_adopt`` should run the names it applies through the
   same judge.
   Tests: test_a_write_grantees_concurrent_branch_does_not_move_her_file_into_a_folder_he_cannot_write,
   test_a_write_grantees_concurrent_branch_does_not_delete_her_file_past_the_trash.

8. A LINK IN THE WATCHED FOLDER MAKES HER DEVICE IMPORT AND DELETE FILES OUTSIDE IT.  Anyone who can
   write her watched folder (a shared scanner inbox; or she herself, ``~/Inbox/docs ->
   ~/Documents``) puts a symlink to a folder of hers in it.  The first scan does not follow it
   (watcher.py ``walk``, "links are not followed"), but the inotify watch does
   (``awatch(source, ...)``, watcher.py:181: watchfiles watches through a symlinked folder), and
   every path it reports is looked at, opened and removed by its full path: ``stamps``
   (watcher.py:91), ``take`` (importer.py:108 ``lstat``), ``open_source`` (importer.py:61,
   ``O_NOFOLLOW`` guards the last part only) and ``_remove_source`` (importer.py:252 ``unlink``)
   all follow ``scans`` on the way.  Seen, with ``delete_file_from_source on``: she saves
   ``Documents/thesis.txt`` and within a second it is imported as ``Imported/scans/thesis.txt``
   and deleted from ``Documents`` ("2 new, 2 removed from source" for two files), no warning.
   The planter needs no right on her folder (her device reads and deletes as her; in root's
   shared mount, her helper).  Without deletion her files still go into ``import_into`` (a folder
   she may share).  Any folder she can write is reachable the same way (another user's she may
   write, a mounted share), and so is the vault folder itself, which ``settings.check`` refuses as
   the watched folder for exactly this reason ("it would import its encrypted files",
   settings.py:141-143) but never sees behind a link: seen, ``inbox/backup -> VAULT`` and one more
   save through the mount, and within seconds the import takes in the vault's own ``.vf`` files
   (a loop: each import writes new ones) and deletes them and ``store.sqlite`` itself; the mount
   says "the vault's database files (store.sqlite) were removed while in use", ``fusevault info``
   then counts "users: 0" and the next mount fails "the vault has no user": her vault is
   destroyed (her other replicas or backups aside).
   Fix: take a reported path only if its real path is under the watched folder (and is the same
   file as an ``lstat`` of each part from the source's descriptor: ``openat`` one part at a time
   with ``O_NOFOLLOW | O_DIRECTORY``, as export does, then ``unlinkat`` from that descriptor);
   drop events under a symlinked folder.
   Tests: test_a_link_in_the_watched_folder_does_not_make_her_device_delete_files_outside_it,
   test_a_link_in_the_watched_folder_to_the_vault_folder_does_not_destroy_her_vault.

9. A SENDER'S NAMES MERGE INTO HER EXISTING FOLDERS: ``RECEIVE`` AT HOME WRITES ``~/.ssh/authorized_keys2``.
   A receive without ``--output`` (and no dump folder) writes into the current folder.  A name of
   several parts is taken if no part is ``..`` or empty (output.py:23-29 ``safe_target``), folders
   on the way may already exist (``mkdir_inside`` takes a real folder as made, output.py:63-65),
   and only a file already at the final name is refused (receive.py:227-228).  So a session
   offering ``.ssh/authorized_keys2`` writes into her existing ``~/.ssh``: seen, "received
   .../home/.ssh/authorized_keys2", exit 0, and OpenSSH reads that file by default: the sender
   logs in as her.  No changed client is even needed: ``fusevault send`` of a folder named
   ``.ssh`` holding ``authorized_keys2`` offers exactly that name (the test changes only the
   sender's ``collect`` to keep it short).  ``receive --list`` would show the name, if she ran it
   first.  SECURITY.md promises "A name from the sender never leaves the output folder" -- true,
   and not enough when the output folder is her home.
   Fix: the first part of every name (the file or folder the sender offered) must not exist in
   the output folder (refused like an existing file, exit 11, or asked), so a session only ever
   makes new top-level entries; the same for ``link get`` (hole 1).
   Test: test_a_hostile_senders_name_does_not_write_into_her_existing_folders.

What held
---------
- Send / receive, a hostile sender or relay: names with ``..``, ``.``, absolute or empty parts,
  NUL or parts over 255 bytes are refused (output.py ``safe_target``; hole 9 is what a name of
  several parts still does inside the output folder); a file where a
  folder of the list is, or a symlink on the way (hers or one the list made), is refused, never
  followed (``mkdir_inside``); partial files are opened ``O_NOFOLLOW`` and linked under their name
  only if nothing is there (``os.link``), so an existing file is never replaced; the received
  file's mode is never the sender's (receive.py:272); a symlink arrives only if it stays in its
  folder by its text and, with every link in place, resolved (a top-level link can only point
  at itself); duplicate names and wrong chunk counts are refused; NaN / Infinity in the list are
  refused by ``loads_untrusted``; a relay that reuses a session id over an old partial file of
  another transfer only gets a failed SHA-256 check of the whole file (read, not run).
- ``link get``: a symlink out of the destination followed by a file through it (``inside``), a
  folder entry in place of a symlink (round 17), one path named twice: refused.
- Export: every folder and file made relative to a descriptor, ``O_NOFOLLOW``/``O_EXCL``, never a
  setuid/setgid/sticky bit, a destination inside a mounted vault refused, vault names checked
  again (``names.valid``), nothing replaced without ``--overwrite`` (``RENAME_NOREPLACE``).
- Import with ``delete_file_from_source``: a source is removed only when its (dev, ino, size,
  mtime) equal the import record's and the vault copy, made durable, hashes to the record's
  SHA-256; records are sealed under her key and their locations come from her own scan of the
  watched folder (but see hole 8: its events follow a symlinked folder); a link or fifo as the
  file itself is never imported or waited on.  A file renamed in the watched folder onto a name
  the vault holds replaces it, but the replaced file's versions become the new one's history
  (namespace.py rename), nothing lost.
- Conflicts, besides hole 7: a writer's branch with her current head and his names (rule 2) is
  judged when adopted and refused with an alarm.  The conflict copy's device label comes from the
  losing version's sealed ``device``, kept only if ``names.valid`` and at most 64 bytes
  (conflicts.py:277), else "another device": no name with ``/`` or ``..`` comes of it; the copy's
  id and key are derived; conflicts on files shared with her are settled by the owner's devices
  only.
- Settings: the mount's ``config``, ``export`` and ``receive`` (through the mount) use the
  settings this device confirmed, not the store's (``receive --vault`` aside: hole 5);
  ``settings.check`` refuses a watched folder that holds the vault folder or a mount, or nests
  with the dump folder (not one reached through a link inside it: hole 8).
- Drop boxes: a dropped file's mode is ``& 0o777``; a dropped name never replaces her file
  (``unique_name``, rename ``noreplace``); an item that does not open or check out is discarded
  (`tests/services/test_links.py::test_garbage_in_a_drop_box_does_not_block_what_comes_after`),
  as long as the failure is a CorruptData (holes 3 and 4 are the other kinds).  The link store's
  version ids name the hidden ``.fvdrop-VID``: one with ``/`` or ``..`` in it only fails that
  item's writing (``make_dirs`` refuses ``..``), withholding the store could do anyway (read,
  not run).
- The systemd unit (contrib/systemd/fusevault@.service) is static and reads an EnvironmentFile she
  writes; fusevault generates no unit from names.  Under the journal each line of a message gets
  its level prefix (systemd.py ``JournalFormatter``), so a newline in a name cannot forge a level.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import stat
import time
import uuid
from pathlib import Path

import adversary
import pytest
from attack_scenes import add_users, recipients_dek, share
from conftest import PASSPHRASE, fusevault, is_mounted, mounted, running_relay, wait_for
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from transfer_helpers import receive, sending

from fusevault.crypto import aead
from fusevault.crypto.signing import sign_doc
from fusevault.encoding import b64e
from fusevault.errors import VaultError
from fusevault.links import capability, content
from fusevault.links.client import LinkClient
from fusevault.store import replica
from fusevault.store.local import LocalStore
from fusevault.vault.model.nodes import open_node_attrs
from mount.test_trust_writes import BOB, CAROL, _key, _node_fid


class _Blocks:
    """What a link store serves for a manifest the link's owner made (the blocks, sealed as
    ``content.upload`` seals them): enough for ``content.write_local`` without a server."""

    def __init__(self, dek: bytes, item: str, files: dict[int, bytes]) -> None:
        self.sealed = {f"b{i}": capability.seal_block(dek, item, i, 0, data) for i, data in files.items()}

    def block(self, block_id: str, read_key: bytes) -> bytes:
        return self.sealed[block_id]


def _file_entry(path: str, data: bytes, index: int, mode: int) -> dict:
    return {"path": path, "type": "file", "mode": mode, "mtime_ns": 0, "size": len(data),
            "sha256": hashlib.sha256(data).hexdigest(), "blocks": [f"b{index}"]}


# --- hole 1: `link get` gives a folder of hers that already exists the link's mode


def test_link_get_does_not_chmod_a_folder_of_hers_that_is_already_there(tmp_path: Path) -> None:
    home = tmp_path / "home"
    (home / ".ssh").mkdir(parents=True, mode=0o700)
    (home / ".ssh" / "authorized_keys").write_text("ssh-ed25519 AAAA her own key\n")
    os.chmod(home / ".ssh", 0o700)
    # A signed link whose top folder is named ".ssh", mode 0o777 (a folder entry only: no file of
    # hers is in the way, so no --overwrite is needed); she runs `fusevault link get LINK` at home.
    manifest = {"name": ".ssh", "key": b64e(b"k" * 32), "entries": [
        {"path": ".ssh", "type": "dir", "mode": 0o1777, "mtime_ns": 0},
    ]}
    try:
        content.write_local(None, b"r" * 32, "item", manifest, home)  # type: ignore[arg-type]
    except VaultError:
        pass  # refusing the link is fine
    mode = stat.S_IMODE(os.stat(home / ".ssh").st_mode)
    assert mode == 0o700, f"`link get` made her existing ~/.ssh mode {mode:o} (the link's)"


def test_a_links_top_name_is_one_name_not_a_path_into_her_folders(tmp_path: Path) -> None:
    home = tmp_path / "home"
    (home / ".ssh").mkdir(parents=True, mode=0o700)
    key = b"ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIHNlbmRlcidzIGtleQ the link's sender\n"
    dek = aead.new_key()
    # One file, its top name ".ssh/authorized_keys2": every part a safe name, no ".." anywhere.
    manifest = {"name": ".ssh/authorized_keys2", "key": b64e(dek),
                "entries": [_file_entry(".ssh/authorized_keys2", key, 0, 0o600)]}
    try:
        content.write_local(_Blocks(dek, "item", {0: key}), b"r" * 32, "item", manifest, home)  # type: ignore[arg-type]
    except VaultError:
        pass  # refusing the link is fine
    assert not (home / ".ssh" / "authorized_keys2").exists(), (
        "`link get` at home wrote the sender's key into her ~/.ssh/authorized_keys2")


# --- hole 2: `link get` writes the link's setuid and setgid bits


def test_link_get_writes_no_setuid_or_setgid_file(tmp_path: Path) -> None:
    dest = tmp_path / "Downloads"
    dest.mkdir()
    program = b"#!/bin/sh\nid\n"
    dek = aead.new_key()
    manifest = {"name": "tool", "key": b64e(dek), "entries": [_file_entry("tool", program, 0, 0o6755)]}
    content.write_local(_Blocks(dek, "item", {0: program}), b"r" * 32, "item", manifest, dest)  # type: ignore[arg-type]
    mode = os.stat(dest / "tool").st_mode
    assert not mode & (stat.S_ISUID | stat.S_ISGID), f"`link get` wrote a file of mode {stat.S_IMODE(mode):o}"


@pytest.fixture(scope="module")
def relay(redis_url: str, couchdb_server: str):
    """A relay with its link store (one process for the module)."""
    with running_relay(redis_url, "--couchdb", f"{couchdb_server}/links{uuid.uuid4().hex[:8]}") as (_, url):
        yield url


# --- hole 3: one dropped item a stranger sends blocks her drop box for good


def _drop_hostile(drop: str, tmp_path: Path, how: str) -> None:
    """What anyone holding the drop link sends: a sealed, well-formed-looking item whose entry
    carries a mode that is no number, or whose top name has a "/" in it."""
    link = capability.parse(drop)
    (tmp_path / "junk.txt").write_text("junk\n")
    with LinkClient(link.server) as client:
        manifest, blocks = content.upload(client, link.item, link.first,
                                          content.local_sources(tmp_path / "junk.txt"))
        entry = manifest["entries"][0]
        if how == "escape":  # a name that writes to her terminal, on an item that does not check out
            name = "\x1b]52;c;ZWNobyBvd25lZA==\x07junk\x1b[2K"
            manifest = {**manifest, "name": name, "entries": [{**entry, "path": name, "sha256": "0" * 64}]}
        elif how == "mode":
            manifest = {**manifest, "entries": [{**entry, "mode": "rw-r--r--"}]}
        else:  # a top name of two parts ("a/b"): every part is a safe name, the whole is no file name
            manifest = {**manifest, "name": "a/b", "entries": [{**entry, "path": "a/b"}]}
        client.add_version(link.item, link.first, {**capability.seal_drop(link, manifest), "blocks": blocks})


def _collected(mnt: Path) -> bool:
    """Whether the mount's own drop-box collector has met what was dropped (and said it failed), or the
    mount is gone (the caller asserts it is not)."""
    if not is_mounted(mnt):
        return True
    status = fusevault("status", mnt, "--json", passphrase=None)
    return status.returncode == 0 and bool(
        json.loads(status.stdout)["mounts"][0]["tasks"]["drop boxes"].get("last_error"))


def test_a_strangers_dropped_item_does_not_take_her_mount_down(relay: str, vault: Path,
                                                                tmp_path: Path) -> None:
    """The mount's own collector (its first pass, DROPS_FIRST after the mount) meets the item: a
    ValueError it did not catch."""
    with mounted(vault, tmp_path / "mnt") as mnt:
        (mnt / "keep.txt").write_text("hers\n")
        drop = fusevault("link", "create", mnt / "Inbox", "--append", "--relay", relay).stdout.strip()
    _drop_hostile(drop, tmp_path, "mode")
    with mounted(vault, tmp_path / "mnt") as mnt:
        wait_for(lambda: _collected(mnt), "the collector's first pass")
        assert is_mounted(mnt), "a stranger's dropped item took her mount down (the collector's ValueError)"
        assert (mnt / "keep.txt").read_text() == "hers\n"


def test_a_link_store_answering_nonsense_does_not_take_her_mount_down(redis_url: str, couchdb_server: str,
                                                                      vault: Path, tmp_path: Path) -> None:
    import http.server
    import threading
    from urllib.parse import urlsplit

    class Nonsense(http.server.BaseHTTPRequestHandler):
        def _answer(self) -> None:
            self.rfile.read(int(self.headers.get("Content-Length") or 0))
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", "2")
            self.end_headers()
            self.wfile.write(b"{}")

        do_GET = do_POST = do_PATCH = do_DELETE = _answer

        def log_message(self, *args: object) -> None:
            pass

    with mounted(vault, tmp_path / "mnt") as mnt:
        (mnt / "keep.txt").write_text("hers\n")
        db = f"{couchdb_server}/links{uuid.uuid4().hex[:8]}"
        with running_relay(redis_url, "--couchdb", db) as (_, url):
            made = fusevault("link", "create", mnt / "Inbox", "--append", "--relay", url)
            assert made.returncode == 0, made.stderr
    # Whoever runs the link store now answers every request with 200 and "{}".
    where = urlsplit(url)
    server = http.server.ThreadingHTTPServer((where.hostname, where.port), Nonsense)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        with mounted(vault, tmp_path / "mnt") as mnt:
            wait_for(lambda: _collected(mnt), "the collector's first pass")
            alive = is_mounted(mnt)
    finally:
        server.shutdown()
        server.server_close()
    assert alive, "a link store answering {} to the list of versions took her mount down"


def test_a_strangers_dropped_item_named_a_slash_b_does_not_block_the_drops_after_it(
        relay: str, vault: Path, tmp_path: Path) -> None:
    (tmp_path / "invoice.pdf").write_bytes(b"%PDF a real drop")
    with mounted(vault, tmp_path / "mnt") as mnt:
        drop = fusevault("link", "create", mnt / "Inbox", "--append", "--relay", relay).stdout.strip()
        _drop_hostile(drop, tmp_path, "slash")
        pushed = fusevault("link", "push", tmp_path / "invoice.pdf", drop, passphrase=None)
        assert pushed.returncode == 0, pushed.stderr
        collected = fusevault("link", "collect", cwd=mnt)
        again = fusevault("link", "collect", cwd=mnt)
        assert (mnt / "Inbox" / "invoice.pdf").exists(), (
            "the genuine drop never arrived behind the stranger's item: "
            f"collect said {collected.returncode} {collected.stdout!r} {collected.stderr!r}, "
            f"then {again.returncode} {again.stdout!r} {again.stderr!r}; "
            f"Inbox holds {os.listdir(mnt / 'Inbox')}")


def test_a_strangers_dropped_item_does_not_make_her_device_forget_her_drop_box(
        relay: str, vault: Path, tmp_path: Path) -> None:
    with mounted(vault, tmp_path / "mnt") as mnt:
        drop = fusevault("link", "create", mnt / "Inbox", "--append", "--relay", relay).stdout.strip()
        item = capability.parse(drop).item
        _drop_hostile(drop, tmp_path, "slash")
        fusevault("link", "collect", cwd=mnt)
        listed = fusevault("link", "list", cwd=mnt)
        revoked = fusevault("link", "revoke", item, cwd=mnt)
        assert item in listed.stdout and revoked.returncode == 0, (
            f"her drop box is gone from her own list ({listed.stdout!r}) and cannot be revoked "
            f"({revoked.returncode} {revoked.stderr!r}): its record was refused for the stranger's name")


# --- hole 5: `receive --vault` takes its folder from a user document anyone can sign


def test_receive_with_vault_does_not_land_files_where_a_store_writer_says(transfer_relay: str, vault: Path,
                                                                          tmp_path: Path) -> None:
    dump, chosen = tmp_path / "dump", tmp_path / "autostart"
    dump.mkdir()
    with mounted(vault, tmp_path / "mnt") as mnt:
        result = fusevault("config", "set", "target_dir_to_dump", dump, "--mount", mnt, passphrase=None)
        assert result.returncode == 0, result.stderr
    [her] = adversary.docs(vault, "UserDetails")
    assert her["target_dir_to_dump"] == str(dump)
    src = tmp_path / "sent" / "evil.desktop"
    src.parent.mkdir()
    src.write_text("[Desktop Entry]\nExec=sh -c 'id > /tmp/owned'\n")
    # Her own device, her key: the folder it confirmed (fixed: cli/transfer.py ``_dump_dir`` unlocks).
    with sending(transfer_relay, src) as (sender, name, code):
        got = fusevault("receive", name, "--relay", transfer_relay, "--vault", vault,
                        env={"FUSEVAULT_CODE": code}, cwd=tmp_path)
        assert got.returncode == 0 and (dump / "evil.desktop").exists(), got.stderr
        sender.wait(30)
    (dump / "evil.desktop").unlink()
    # The store writer: her user document, its signing key his, its dump folder his choice, signed by him.
    his = Ed25519PrivateKey.generate()
    forged = {**her, "target_dir_to_dump": str(chosen),
              "public_sign": b64e(his.public_key().public_bytes_raw())}
    adversary.put(vault, sign_doc(her["_id"], his, forged))
    with sending(transfer_relay, src) as (sender, name, code):
        got = fusevault("receive", name, "--relay", transfer_relay, "--vault", vault,
                        env={"FUSEVAULT_CODE": code}, cwd=tmp_path)
    assert not (chosen / "evil.desktop").exists(), (
        f"the received file landed in {chosen}, the folder the store writer's self-signed document named "
        f"(receive exit {got.returncode})")
    assert got.returncode == 5 and "do not match" in got.stderr and "Traceback" not in got.stderr, got.stderr
    assert not (dump / "evil.desktop").exists()
    no_key = fusevault("receive", "1234", "--relay", transfer_relay, "--vault", vault, passphrase=None,
                       env={"FUSEVAULT_CODE": "1-a-b"}, cwd=tmp_path)
    assert no_key.returncode != 0 and "no passphrase" in no_key.stderr and "Traceback" not in no_key.stderr


# --- hole 6: the sender's names reach her terminal raw


def test_a_senders_file_name_does_not_write_control_sequences_to_her_terminal(transfer_relay: str,
                                                                              tmp_path: Path) -> None:
    # A name any sender can give a file on Linux: an OSC 52 (set the clipboard) and a line that
    # erases itself and says something else.
    name = "\x1b]52;c;ZWNobyBvd25lZA==\x07report\x1b[2K\r\x1b[1Afusevault: wrong code.txt"
    src = tmp_path / "sent" / name
    src.parent.mkdir()
    src.write_text("hello\n")
    out = tmp_path / "out"
    with sending(transfer_relay, src) as (sender, session, code):
        got = receive(transfer_relay, session, code, out)
        sender.wait(30)
    assert got.returncode == 0, got.stderr
    assert (out / name).read_text() == "hello\n"
    shown = got.stdout + got.stderr
    assert "\x1b" not in shown and "\x07" not in shown, f"`receive` printed the sender's name raw: {shown!r}"


def test_a_strangers_dropped_name_does_not_write_control_sequences_to_her_terminal(
        relay: str, vault: Path, tmp_path: Path) -> None:
    with mounted(vault, tmp_path / "mnt") as mnt:
        drop = fusevault("link", "create", mnt / "Inbox", "--append", "--relay", relay).stdout.strip()
        _drop_hostile(drop, tmp_path, "escape")
        collected = fusevault("link", "collect", cwd=mnt)
        status = fusevault("status", cwd=mnt)
    assert "discarded" in collected.stderr, collected.stderr
    shown = collected.stdout + collected.stderr + status.stdout + status.stderr
    assert "\x1b" not in shown and "\x07" not in shown, (
        f"a stranger's dropped name reached her terminal raw: {collected.stderr!r}")


# --- hole 7: a WRITE grantee's concurrent branch moves her file into a folder he may not write


def _bobs_branch(vault: Path, fid: str, change: dict, doc: dict | None = None, dek: bytes | None = None,
                 rev: str = "0") -> None:
    """What the server (or a writer of store.sqlite) bob runs serves: a sibling of her current node
    revision (same parent revision, the revision id ``rev`` * 32: "0", the lowest, keeps hers current),
    her node's sealed attributes with ``change``, sealed under the DEK his key file opens, signed by bob.
    ``doc``, ``dek``: her node document and the key he held of another time (default: now).
    Stored as replication stores a pulled revision (store/replica.py ``store_revisions``)."""
    dek = recipients_dek(vault, "bob", BOB, fid) if dek is None else dek
    doc = adversary.get(vault, fid) if doc is None else doc
    attrs = {**open_node_attrs(doc, dek), **change}
    body = {k: v for k, v in doc.items() if not k.startswith("_") and k != "sig"} | {"_id": fid}
    plain = json.dumps(attrs, separators=(",", ":")).encode()
    body["enc"] = b64e(aead.seal(dek, plain, aead.ad("node", fid)))
    bob = _key(vault, "bob", BOB)
    branch = sign_doc(bob.user_id, bob.identity.sign, body)
    store = LocalStore(vault / "store.sqlite")
    try:
        history = replica.current_history(store, fid)
        generation = int(history[0].split("-")[0])
        branch["_rev"] = f"{generation}-{rev * 32}"
        ids = [rev * 32] + [h.split("-", 1)[1] for h in history[1:]]
        branch["_revisions"] = {"start": generation, "ids": ids}
        assert replica.store_revisions(store, [branch]).conflicts == [fid]
    finally:
        store.close()


def _settled(path: Path, wait: float = 10) -> None:
    """The sync service settles what is left at mount (sync/service.py:88): give it until ``path``
    is gone from where it was, or ``wait`` seconds."""
    deadline = time.monotonic() + wait
    while time.monotonic() < deadline and path.exists():
        time.sleep(0.2)
    time.sleep(0.5)


def her_plan_beside_bobs(vault: Path, tmp_path: Path, final: str, *, carol_reads_public: bool = False
                         ) -> tuple[str, dict]:
    """Her team/plan.txt, team shared WRITE with bob (and, with ``carol_reads_public``, her public/
    shared READ with carol), then saved again as ``final``: (its id, what bob's branch takes of her
    first version: head, manifest, size, allocated, so that hers descends from his)."""
    add_users(vault, "bob", *(["carol"] if carol_reads_public else []))
    with mounted(vault, tmp_path / "mnt") as mnt:
        (mnt / "team").mkdir()
        (mnt / "team" / "plan.txt").write_text("the plan, first draft\n")
        assert share(mnt, "team", "bob", "WRITE") is not None  # bob writes team, nothing else
        if carol_reads_public:
            (mnt / "public").mkdir()
            (mnt / "public" / "readme.txt").write_text("for carol\n")
            assert share(mnt, "public", "carol", "READ") is not None  # carol reads public, nothing else
    fid = _node_fid(vault, "alice", "plan.txt")
    first = open_node_attrs(adversary.get(vault, fid), recipients_dek(vault, "bob", BOB, fid))
    with mounted(vault, tmp_path / "mnt") as mnt:
        (mnt / "team" / "plan.txt").write_text(final)
    return fid, {k: first[k] for k in ("head", "manifest", "size", "allocated")}


def test_a_write_grantees_concurrent_branch_does_not_move_her_file_into_a_folder_he_cannot_write(
        vault: Path, tmp_path: Path) -> None:
    fid, kept = her_plan_beside_bobs(vault, tmp_path, "the plan, final: not for carol\n",
                                     carol_reads_public=True)
    public = _node_fid(vault, "alice", "public")
    # bob's branch: her first version's contents (so hers "descends" from it: rule 3 keeps her contents
    # and takes his names), and the name public/plan.txt.
    _bobs_branch(vault, fid, {"links": [[public, "plan.txt"]], **kept})
    with mounted(vault, tmp_path / "mnt") as mnt:
        _settled(mnt / "team" / "plan.txt")
        team, shown = sorted(os.listdir(mnt / "team")), sorted(os.listdir(mnt / "public"))
    with mounted(vault, tmp_path / "mnt"):
        pass  # her next unlock seals the keys the folder's grantees lack (share_ops.resume)
    carol = _key(vault, "carol", CAROL)
    keys = os.listdir(vault / "users" / carol.user_id / "shared")
    alice = _key(vault, "alice", PASSPHRASE)
    sealed_to_carol = f"{alice.user_id}_{fid}.vfkey" in keys
    assert team == ["plan.txt"] and "plan.txt" not in shown and not sealed_to_carol, (
        f"bob's branch moved her team/plan.txt: team holds {team}, public holds {shown}, "
        f"its key sealed to carol: {sealed_to_carol}")


def test_a_write_grantees_concurrent_branch_does_not_delete_her_file_past_the_trash(
        vault: Path, tmp_path: Path) -> None:
    fid, kept = her_plan_beside_bobs(vault, tmp_path, "the plan, final\n")
    _bobs_branch(vault, fid, {"links": [], **kept})
    with mounted(vault, tmp_path / "mnt") as mnt:
        _settled(mnt / "team" / "plan.txt")
    with mounted(vault, tmp_path / "mnt") as mnt:
        team = os.listdir(mnt / "team")
        trash = fusevault("trash", cwd=mnt).stdout
        history = fusevault("history", mnt / "team" / "plan.txt")
    doc = adversary.get(vault, fid)
    assert "plan.txt" in team or "plan.txt" in trash, (
        f"bob's branch with no names took her plan.txt out of every folder and out of the trash: team "
        f"holds {team}, trash says {trash!r}, history says {history.stderr!r}; her node document now says "
        f"delete={doc.get('delete')}")


# --- hole 8: a link in the watched folder: files outside it are imported and deleted


def test_a_link_in_the_watched_folder_does_not_make_her_device_delete_files_outside_it(
        vault: Path, tmp_path: Path) -> None:
    from mount.test_imports import watch

    inbox, documents = tmp_path / "inbox", tmp_path / "Documents"
    inbox.mkdir()
    documents.mkdir()
    (documents / "thesis.txt").write_text("chapter one\n")
    # What anyone who can write the watched folder (a shared scanner inbox) plants: a link to a
    # folder of hers.  He needs no right on it: her device reads and deletes as her.
    os.symlink(documents, inbox / "scans")
    with mounted(vault, tmp_path / "mnt") as mnt:
        watch(mnt, inbox, settle=0.3, delete_file_from_source="on")
        time.sleep(2)  # the first scan: it does not follow the link (watcher.py ``walk``)
        (documents / "thesis.txt").write_text("chapter one, chapter two\n")  # she goes on working
        deadline = time.monotonic() + 8
        while time.monotonic() < deadline and (documents / "thesis.txt").exists():
            time.sleep(0.2)
        imported = sorted(str(p.relative_to(mnt)) for p in mnt.rglob("*"))
    assert (documents / "thesis.txt").exists(), (
        f"her {documents}/thesis.txt, outside the watched folder, was deleted by the import; "
        f"the vault now holds {imported}")


def test_a_link_in_the_watched_folder_to_the_vault_folder_does_not_destroy_her_vault(
        vault: Path, tmp_path: Path) -> None:
    from mount.test_imports import watch

    inbox = tmp_path / "inbox"
    inbox.mkdir()
    os.symlink(vault, inbox / "backup")  # settings.check refuses the vault folder itself, not this
    with mounted(vault, tmp_path / "mnt") as mnt:
        (mnt / "notes.txt").write_text("precious\n")
        watch(mnt, inbox, settle=0.3, delete_file_from_source="on")
        time.sleep(1)
        (mnt / "notes2.txt").write_text("she goes on working\n")
        os.sync()
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline and (vault / "store.sqlite").exists():
            time.sleep(0.2)
        gone = not (vault / "store.sqlite").exists()
        task = fusevault("status", cwd=mnt).stdout
    again = fusevault("info", vault, passphrase=None)
    assert not gone, (
        f"the import deleted her vault's store.sqlite through the link; status said {task[-400:]!r}; "
        f"`fusevault info` now says {again.stdout + again.stderr!r}")


# --- hole 9: a hostile sender's name is a path into her existing folders


def test_a_hostile_senders_name_does_not_write_into_her_existing_folders(transfer_relay: str, tmp_path: Path,
                                                                        monkeypatch) -> None:
    import threading

    from fusevault.transfer import send as sending_module
    from fusevault.transfer.offer import Offer, Outgoing

    home = tmp_path / "home"
    (home / ".ssh").mkdir(parents=True, mode=0o700)
    key = tmp_path / "key.pub"
    key.write_text("ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIHNlbmRlcidzIGtleQ the sender\n")
    # The sender's own client, changed: the real send, offering one file under a name of its choice.
    offer = Offer(files=[Outgoing("0", ".ssh/authorized_keys2", key, key.stat().st_size)])
    monkeypatch.setattr(sending_module, "collect", lambda paths: offer)
    announced: dict[str, str] = {}
    ready = threading.Event()

    def announce(name: str, code: str) -> None:
        announced.update(name=name, code=code)
        ready.set()

    stop = threading.Event()

    def run() -> None:
        # The sender would wait on for a receiver that refused: once she is done, it is stopped as
        # Ctrl-C stops it (``interrupt``: KeyboardInterrupt at its next look, within a second), not
        # waited out for the join's 30 s.  The relay may be gone by the time it stops.
        with contextlib.suppress(VaultError, KeyboardInterrupt):
            sending_module.send(transfer_relay, [key], announce, say=lambda t: None, interrupt=stop)

    sender = threading.Thread(target=run, daemon=True)
    sender.start()
    assert ready.wait(30), "the sender did not open a session"
    # She runs `fusevault receive NAME` at home (no --output, no mounted vault: the current folder).
    got = fusevault("receive", announced["name"], "--relay", transfer_relay, passphrase=None,
                    env={"FUSEVAULT_CODE": announced["code"]}, cwd=home)
    stop.set()
    sender.join(30)
    assert not sender.is_alive(), "the sender did not stop"
    assert not (home / ".ssh" / "authorized_keys2").exists(), (
        f"`receive` at home wrote the sender's key into her ~/.ssh/authorized_keys2: {got.stdout!r}")
