r"""Attack round 26b2: stop 41's transfer and link-fetch code (links/content.py ``write_local``,
``_reach``, ``_write_entry``, ``_link_new``, ``_drop_links_leading_out``; transfer/receive.py
``_open_partial``/``_check_partial``; resume.py ``partial_path``; output.py ``make_top_folders``,
``_check_claimed_top``, ``_links_to_make``/``_make_all``/``_drop_leading_out``) attacked from a
hostile link owner / sender and another local user of a shared output folder.

Status: every hole is fixed and its test passes (docs/SECURITY.md "Attack round 26" says how).

Holes 1 and 2 call the product's functions directly (no mount, no relay): ``content.write_local``
is what ``fusevault link get`` runs, ``ResumeState.partial_path`` + ``receive._open_partial`` what
``fusevault receive`` runs for every file, as rounds 24b/25b did.  Holes 3 and 4 run a real mount, a
real relay with its CouchDB link store, ``link push`` and ``link collect`` (in hole 3 the store's
operator edits one CouchDB document; hole 4 needs no attacker at all).

Holes
-----
1. ``LINK GET`` CANNOT WRITE A FILE WHOSE NAME IS A VALID LONG NON-ASCII NAME: ENAMETOOLONG, THE FETCH
   FAILS AT IT. ``entries`` accepts every name part up to 255 bytes (output.py:30,
   ``safe_target``), as every Linux file system does, but ``_write_entry`` (content.py:298) makes
   its hidden temporary as ``f".{name[:200]}.fvpart-{8 hex}"``: ``[:200]`` cuts *characters*, not
   bytes. A name of 85 CJK characters (255 bytes of UTF-8, e.g. a Japanese document title) keeps all
   255 bytes, and the temporary is 272 bytes: ``os.open`` (content.py:394) fails with ENAMETOOLONG
   (an OSError, no refusal of the product's own). ASCII names pass (200 bytes cut), so it is only
   the non-Latin user who cannot fetch. Impact: a file she was given by a link (or a version of a
   folder holding one) can never be fetched to her disk -- the link is unusable, a whole folder
   stops at that file, no message but a raw OSError. Fix: cut the name by bytes (encode, cut at 200
   bytes, decode with ``errors="ignore"``/surrogateescape) or name the temporary by the random tag
   alone.
   Test: test_link_get_writes_a_file_with_a_long_valid_non_ascii_name.

2. ``RECEIVE`` CANNOT RECEIVE A FILE WHOSE NAME IS A VALID LONG NON-ASCII NAME: THE SAME CUT BY
   CHARACTERS IN ``partial_path`` (resume.py:165, ``f".{target.name[:200]}.fvpart-{32 hex}"``). The
   partial name for a 255-byte name is 296 bytes: ``plan``'s ``os.lstat`` of it (receive.py:254)
   fails with ENAMETOOLONG (an OSError, not the FileNotFoundError it expects), and so would
   ``_open_partial`` (receive.py:406); the whole session fails, no file of it is received. ASCII
   names are fine (1 + 200 + 8 + 32 = 241 bytes); any name of more than 214 bytes of multi-byte
   letters (Greek, Cyrillic, CJK) overflows. Impact: a file a sender offers under a legitimate name
   is never received, the session fails with an OSError. Fix: cut by bytes so the whole partial name
   stays within 255 bytes (e.g. at most 200 bytes of the name), or name it by the tag alone.
   Test: test_receive_partial_file_for_a_long_valid_non_ascii_name_can_be_made.

3. THE LINK STORE'S VERSION ID IS USED UNCHECKED AS A FILE NAME IN HER VAULT: AN ID WITH "/"
   LEAVES THE DROPPED FILE HIDDEN IN HER DROP-BOX FOLDER, RE-WRITTEN AT EVERY RUN.  ``_take``
   (links/owner.py:269) names the hidden copy ``f".fvdrop-{vid}"`` with ``vid`` the ``id`` of the
   store's list of versions (owner.py:221), checked only to be a string (links/client.py:81); the
   id is bound to nothing sealed.  ``_write_drop`` splits the path on "/" (``make_dirs``), so an id
   ``x/y`` writes the dropped file as ``Inbox/.fvdrop-x/y``; the rename of ``.fvdrop-x/y`` then
   fails, and ``_remove(folder, temp)`` (owner.py:291) looks up ``folder.children[b".fvdrop-x/y"]``:
   a KeyError, "internal error on a dropped item; it stays on the server".  Seen: ``link collect``
   says "took in 0 dropped file(s)" and an internal error, and her ``Inbox`` holds ``.fvdrop-x/``
   with the dropped bytes inside, never said, never removed; every later run writes it again.
   (An id with ``..`` is refused by the vault's name check, "discarded", but leaves the empty
   ``.fvdrop-x`` folder too; no escape out of the box folder was found.)  Impact: whoever runs the
   link store (or anyone who can add a version, with the store) plants hidden files of his choice
   in her vault folder, against SECURITY.md's "nothing of it left hidden in her folder", and the
   item is never taken nor discarded (an error at every run).  Fix: refuse a version id that is not
   the store's own form (``secrets.token_urlsafe``: ``[A-Za-z0-9_-]+``, bounded length) in
   ``_a_version`` (CorruptData, as malformed), or name the hidden copy by a hash of the id.
   Test: test_a_version_id_with_a_slash_from_the_link_store_leaves_nothing_hidden_in_her_box.

4. A GENUINE SECOND DROP UNDER A LONG NAME IS DISCARDED AND DELETED FROM THE SERVER: DATA LOST.
   When the box folder already holds the dropped name, ``_take`` (links/owner.py:284) takes
   ``unique_name`` (owner.py:51-62), which appends `` (2)`` before the extension with no regard to
   the 255-byte limit of a name.  A dropped file whose name is 252-255 bytes (a long report title;
   every Linux file system and the vault take it, and the first one arrived) gets a 259-byte final
   name; the vault's rename fails (ENAMETOOLONG, an FsError), which ``_collect_one`` (owner.py:227)
   treats as the item's own defect: "a dropped item could not be opened and was discarded (File name
   too long)", and the version is deleted from the server.  (The record is then saved with a stale
   revision: "document link-... was changed by someone else".)  Seen: the second ``link collect``
   discards it, the third finds nothing; the second report exists nowhere any more.  Impact: a file
   dropped into her box by a genuine dropper is lost (and the dropper was told it was delivered),
   and anyone with the drop link can make any later same-named drop vanish by dropping first.  Fix:
   shorten the stem (by bytes, on a character boundary) so ``stem (n).ext`` fits in 255 bytes, and
   never discard an item for a failure of the final rename of a name the collector itself chose.
   Test: test_a_second_drop_under_a_long_name_arrives_and_is_not_discarded.

5. ``LINK GET`` MAKES WHAT IT WRITES WRITABLE BY EVERY LOCAL USER WHEN THE LINK'S OWNER SAYS SO,
   PAST HER UMASK.  ``_write_file`` (content.py:402) and ``_set_folder_modes`` (content.py:386) give
   a file and a folder this fetch made the link's ``mode & SAFE_MODE_BITS`` (0o777): her umask
   (022, 077) is never applied.  ``receive`` gives a file ``0o666 & ~umask`` and folders the umask,
   and round 25b (hole 3, ``_check_claimed_top``) treats a folder "writable by others" as one she
   cannot trust; ``tar`` as a user applies the umask too.  A link's owner lists ``docs`` 0777 and
   ``docs/contract.txt`` 0666.  Seen: under umask 022 both land 0777/0666 in her folder.  Impact:
   any other local user may then rewrite her fetched file's bytes or swap it for his own inside
   the 0777 folder (wrong bytes as her file), on her machine's word that it came from the link.
   (docs/SECURITY.md, 22b, says ``link get`` gives "the link's modes, & 0o777" -- it states the
   bits kept, not that others may write; judged a hole against the "writable by others" rule of
   round 25b.  The drop-box collector does the same in her vault, ``mode=entry["mode"] &
   SAFE_MODE_BITS`` owner.py:323, for a stranger's drop: on root's shared mount other users of the
   machine may then write a dropped file; read in the code, not made a test.)  Fix: ``& ~umask``
   as ``receive`` does (or at least drop the group/other write bits).
   Test: test_link_get_never_makes_what_it_writes_writable_by_other_local_users.

What held
---------
(Tried in the short time this round had; a reading of the code unless a run is said.)
- ``write_local`` without ``--overwrite``: a file or symlink top is put in place with ``os.link``
  (``_link_new``), never replacing what appeared at its name; a folder top must be made by this
  fetch (``_reach`` ``new_top``), one that appeared is refused (exit 11).
- Every folder is reached ``O_NOFOLLOW | O_DIRECTORY`` from the destination's descriptor; a FIFO,
  a file or a symlink in a folder's place is CorruptData, nothing followed.
- A name twice, a path under one of the link's own symlinks, "", ".", "..", absolute names: refused
  by ``entries`` before any block is fetched.
- A file "a" and a folder "a/b" in one receive list: the folder top is made, the file's
  ``os.link`` then refuses (AlreadyExists), nothing replaced.
- A planted partial file (another uid, a second hard link, a FIFO, a symlink): refused by O_EXCL then
  ``_check_partial`` on the descriptor (O_NONBLOCK: no hang on a FIFO).
- A version id with ``..`` (``x/../../Escaped``, run against the real store): the vault refuses
  ``..`` as a name (invalid file name), the item is discarded; nothing is written outside the box
  folder (only the empty ``.fvdrop-x`` of hole 3 stays).
- A top-level symlink of a receive or a link: by its text it must be ``l`` or under ``l/``, so
  resolved it is always a loop and is dropped; none leads out.
- Drop-box symlinks: ``_resolves_inside`` walks the vault with ``..`` above the dropped folder
  counted as out, absolute targets out, 40 hops at most.

Seen, not made a test
---------------------
- The vault's ``write_file`` (vault/services/placing.py:92) names its temporary
  ``b"." + name[:200] + b".fvpart"`` and first unlinks anything there: two names sharing their
  first 200 bytes share it, and a dropped folder holding a file literally named that way loses it
  when the longer one is written (the dropper's own folder, so no harm to her found; elsewhere
  ``write_file`` callers were not checked in time).
- Receive applies no sender mode to folders (umask only): no 0777 folder a local user could plant in.
- ``_links_to_make`` takes an existing identical symlink only at a name inside a claimed top or a
  claimed top-level name; a fresh top-level name is refused by ``check_new_tops`` first.
"""

from __future__ import annotations

import errno
import hashlib
import os
import uuid
from pathlib import Path

import couchdb
import pytest
from conftest import fusevault, mounted, running_relay

from fusevault.crypto import aead
from fusevault.encoding import b64e
from fusevault.links import capability, content
from fusevault.transfer import receive as receive_mod
from fusevault.transfer.output import safe_target
from fusevault.transfer.resume import ResumeState

# 85 CJK characters: 255 bytes of UTF-8, the longest name ext4/xfs/btrfs take, safe by safe_target.
LONG_NAME = "日" * 85
assert len(LONG_NAME.encode()) == 255


class _Blocks:
    def __init__(self, dek: bytes, files: dict[int, bytes]) -> None:
        self.sealed = {f"b{i}": capability.seal_block(dek, "item", i, 0, data) for i, data in files.items()}

    def block(self, block_id: str, read_key: bytes) -> bytes:
        return self.sealed[block_id]


def test_link_get_writes_a_file_with_a_long_valid_non_ascii_name(tmp_path: Path) -> None:
    data = b"the document\n"
    dek = aead.new_key()
    path = f"docs/{LONG_NAME}"
    safe_target(tmp_path, path)  # a name the product itself calls safe
    manifest = {"name": "docs", "key": b64e(dek), "entries": [
        {"path": "docs", "type": "dir", "mode": 0o755, "mtime_ns": 0},
        {"path": path, "type": "file", "mode": 0o644, "mtime_ns": 0, "size": len(data),
         "sha256": hashlib.sha256(data).hexdigest(), "blocks": ["b1"]}]}
    dest = tmp_path / "out"
    dest.mkdir()
    try:
        content.write_local(_Blocks(dek, {1: data}), b"r" * 32, "item", manifest, dest)  # type: ignore[arg-type]
    except OSError as err:
        assert err.errno != errno.ENAMETOOLONG, f"a valid name could not be fetched: {err}"
        raise
    assert (dest / "docs" / LONG_NAME).read_bytes() == data


def test_receive_partial_file_for_a_long_valid_non_ascii_name_can_be_made(tmp_path: Path) -> None:
    target = safe_target(tmp_path, LONG_NAME)  # what Receiver.plan computes for the sender's name
    partial = ResumeState(tmp_path, "sid").partial_path(target, "0")
    try:
        fd = receive_mod._open_partial(partial)  # what Receiver.one does first
    except OSError as err:
        assert err.errno != errno.ENAMETOOLONG, f"a valid name could not be received: {err}"
        raise
    os.close(fd)
    assert len(partial.name.encode()) <= 255


# --- hole 3: a version id the link store chose, used as a file name in her vault -------------------


@pytest.fixture
def link_store(redis_url: str, couchdb_server: str):
    db_url = f"{couchdb_server}/links{uuid.uuid4().hex[:8]}"
    with running_relay(redis_url, "--couchdb", db_url) as (_, url):
        yield url, couchdb.Server(couchdb_server)[db_url.rsplit("/", 1)[1]]


def test_a_version_id_with_a_slash_from_the_link_store_leaves_nothing_hidden_in_her_box(
        link_store, vault: Path, tmp_path: Path) -> None:
    relay, db = link_store
    (tmp_path / "good.txt").write_text("a real drop\n")
    with mounted(vault, tmp_path / "mnt") as mnt:
        drop = fusevault("link", "create", mnt / "Inbox", "--append", "--relay", relay).stdout.strip()
        assert fusevault("link", "push", tmp_path / "good.txt", drop, passphrase=None).returncode == 0
        # The store's operator renames the version's id (what GET .../versions lists): any text.
        (row,) = [db[d] for d in db if d.startswith("version:")]
        row["id"] = "x/y"
        db.save(row)
        collected = fusevault("link", "collect", cwd=mnt)
        listed = sorted(os.listdir(mnt / "Inbox"))
        # Fixed: the item is refused as the store's garbage (nothing written) or taken as good.txt.
        assert listed in ([], ["good.txt"]), (listed, collected.stdout, collected.stderr)


def test_a_second_drop_under_a_long_name_arrives_and_is_not_discarded(
        link_store, vault: Path, tmp_path: Path) -> None:
    relay, _ = link_store
    name = "r" * 251 + ".pdf"  # 255 bytes: a name every Linux file system and the vault take
    (tmp_path / "one").mkdir()
    (tmp_path / "two").mkdir()
    (tmp_path / "one" / name).write_text("the first report\n")
    (tmp_path / "two" / name).write_text("the second report\n")
    with mounted(vault, tmp_path / "mnt") as mnt:
        drop = fusevault("link", "create", mnt / "Inbox", "--append", "--relay", relay).stdout.strip()
        assert fusevault("link", "push", tmp_path / "one" / name, drop, passphrase=None).returncode == 0
        first = fusevault("link", "collect", cwd=mnt)
        assert (mnt / "Inbox" / name).read_text() == "the first report\n", first.stderr
        assert fusevault("link", "push", tmp_path / "two" / name, drop, passphrase=None).returncode == 0
        second = fusevault("link", "collect", cwd=mnt)
        again = fusevault("link", "collect", cwd=mnt)  # a postponed drop would arrive now
        arrived = {p: (mnt / "Inbox" / p).read_text() for p in os.listdir(mnt / "Inbox")}
        assert "the second report\n" in arrived.values(), (arrived.keys(), second.stderr, again.stderr)


def test_link_get_never_makes_what_it_writes_writable_by_other_local_users(tmp_path: Path) -> None:
    data = b"the contract\n"
    dek = aead.new_key()
    manifest = {"name": "docs", "key": b64e(dek), "entries": [
        {"path": "docs", "type": "dir", "mode": 0o777, "mtime_ns": 0},
        {"path": "docs/contract.txt", "type": "file", "mode": 0o666, "mtime_ns": 0, "size": len(data),
         "sha256": hashlib.sha256(data).hexdigest(), "blocks": ["b1"]}]}
    dest = tmp_path / "home"
    dest.mkdir(mode=0o700)
    old = os.umask(0o022)
    try:
        content.write_local(_Blocks(dek, {1: data}), b"r" * 32, "item", manifest, dest)  # type: ignore[arg-type]
    finally:
        os.umask(old)
    modes = {p: os.lstat(dest / p).st_mode & 0o777 for p in ("docs", "docs/contract.txt")}
    assert all(mode & 0o022 == 0 for mode in modes.values()), {p: oct(m) for p, m in modes.items()}
