r"""Attack round 25b: the fixes of round 24 on the transfer and local side -- ``link get``'s
descriptor walk (links/content.py ``write_local``, ``_reach``, ``_write_entry``,
``_drop_links_leading_out``), a receive's keyed partial files (transfer/receive.py
``_open_partial``/``_check_partial``, resume.py ``partial_path``), the defused terminal and log
(encoding.py ``shown``/``one_line``, log_lines.py ``DefusedFormatter``, transfer/progress.py
``DescriptionColumn``) and the drop box's ``_held`` (links/owner.py) -- attacked from the link
owner's, the dropper's, the link store's and another local user's side.

Holes 1 and 2 call ``content.write_local`` (what ``fusevault link get`` runs, cli/links.py:125)
directly with manifests the link's owner signs, as round 24b (5) did: no mount, no relay.  Hole 3
runs real ``fusevault send``/``receive`` through a relay (another local user played by root with
``chown``); holes 4 and 7 a real mount, a relay with its link store and ``link push``/``link collect``.

Status: every hole below is fixed and its test passes (the drop box postponed when its folder is in the way;
dropped and fetched symlinks kept only when they stay inside, all re-checked with every link in place; a top
linked into place without replacing; receive's top folders made at plan time, a claimed one used only if hers;
make_links checks all before making any); docs/SECURITY.md "Attack round 25" says what holds now.

Holes
-----
1. A SYMLINK AN OLDER VERSION MADE IS RE-AIMED OUT OF THE LINK'S FOLDER BY A NEWER VERSION'S
   SYMLINK: ``link get --overwrite`` LEAVES ``photos/l`` POINTING AT HER HOME.  Round 24b (5)'s fix
   makes a link's symlink only when it stays inside by its text and, "resolved with every link in
   place" (docs/SECURITY.md, Attack round 24), ``_drop_links_leading_out`` (content.py:272)
   re-checks -- but only the symlinks *this* fetch made (``links``, content.py:195, 211).  A symlink
   an earlier version made is never looked at again, though what it resolves to depends on the
   links beside it.  Version 1 (top ``photos``, new at her home): ``photos/a/`` a folder,
   ``photos/d -> a``, ``photos/l -> d/..``; every text stays inside (``d/..`` is ``photos`` by
   text), every link resolves inside (``photos/a/..`` is ``photos``): all kept.  Version 2 lists
   only ``photos`` and ``photos/d -> .`` (by text ``photos``, resolved ``photos``: kept).  Seen:
   after ``link get LINK --overwrite`` of version 2, ``photos/l`` resolves to her home folder (it
   lists ``.ssh``); one more staged level per version climbs further (``d -> e/..`` with ``e``
   re-aimed next).  This is exactly the "a dangling or relative link given a meaning later (``d/..``
   climbs wherever ``d`` points)" that output.py ``make_links`` was written against; whatever she
   later does with the fetched folder that follows links (a backup, ``cp -rL``, ``tar -h``, a web
   server or file manager, sending it on) reaches her home.  (fusevault itself no longer writes
   through it: ``_reach`` opens every part O_NOFOLLOW; a v3 listing ``photos/l/.ssh/x`` is
   refused.)
   Fix: after writing, re-check every symlink under the top (walk it from ``root`` with
   O_NOFOLLOW), not only those made now, and remove (or refuse the version while keeping) any that
   resolves outside; or under ``--overwrite`` remove the old version's symlinks the new list does
   not name before making the new ones.
   Test: test_link_get_overwrite_does_not_leave_an_older_versions_symlink_leading_out_of_the_folder.

2. ``LINK GET`` WITHOUT ``--OVERWRITE`` REPLACES A FILE THAT APPEARED AT ITS NAME WHILE IT WAS
   FETCHED.  ``write_local`` checks that the top is new (``check_new_tops``, content.py:191) before
   the first block is fetched, then downloads the whole file into a hidden temporary and puts it
   in place with ``os.replace`` (content.py:265): whatever appeared at that name during the
   download -- her own ``report.pdf`` her browser saved meanwhile, or in a shared destination
   another user's file (as root, the sticky bit does not stop the rename) -- is silently replaced
   and lost, with no ``--overwrite``.  ``receive`` refuses the same case ("appeared while receiving:
   not replaced", receive.py:292, ``os.link``).  The window is the whole download (minutes for a big
   file), not an instant.  Seen: the test's block fetch saves a file at the name (the download's
   duration, made deterministic); ``write_local`` returns normally and her file's bytes are gone.
   Fix: without ``overwrite``, put the top in place with ``os.link`` + unlink of the temporary
   (or ``renameat2(RENAME_NOREPLACE)``), refusing with AlreadyExists (exit 11) as ``receive`` does;
   for a folder top, ``mkdir`` it first and refuse if it exists (``_reach`` now takes an existing
   one silently: content.py:228-233).
   Test: test_link_get_without_overwrite_does_not_replace_a_file_that_appeared_during_the_fetch.

3. A RESUMED RECEIVE WRITES INTO A FOLDER ANOTHER LOCAL USER MADE AT A TOP ITS INTERRUPTED RUN
   CLAIMED BUT HAD NOT MADE YET.  ``Receiver.plan`` claims every new top at once (``state.claim``,
   receive.py:255, "saved before the first is made"), but a top folder is made only when its first
   file arrives (``mkdir_inside`` in ``one``, receive.py:263): a session of ``photos/`` and
   ``videos/`` cut off (Ctrl-C, the network, the relay) while ``photos`` arrived leaves ``videos``
   claimed and absent.  On the next run ``check_new_tops`` skips a claimed top whatever is there now
   (output.py:46, ``ours``; receive.py:233), and ``mkdir_inside`` takes any existing real folder
   (output.py:87-88):
   nothing checks that the folder is the one her run made, or is hers.  Another local user who may
   write the shared output folder -- even a sticky one like /tmp, where he can touch none of her
   entries -- makes ``videos`` (his, 0777) in the pause.  Seen: the resumed receive exits 0,
   "received incoming/videos/holiday.txt", into his folder: he may rename, replace or delete her
   received files there (a file of his own under her received name: wrong bytes as her file) and
   sees every name and size; the promise "a session only ever makes new top-level entries, never
   writes into a folder that was there before" (output.py docstring) is broken.
   Fix: claim a top when it is made, recording its (st_dev, st_ino) in the resume line; on a
   resume, take a claimed top only if it is that very folder (or, not yet made, still absent: then
   make it with ``mkdir`` and refuse EEXIST); at least refuse a claimed top not owned by her
   (``st_uid``) or writable by others.
   Test: test_a_resumed_receive_does_not_write_into_a_folder_another_user_made_at_a_claimed_top.

4. A DROP BOX WHOSE FOLDER IS IN THE WAY FOR ONE RUN DISCARDS, AND DELETES FROM THE LINK STORE,
   EVERY ITEM WAITING IN IT.  ``_collect_one`` (links/owner.py:223-229) takes any CorruptData or
   FsError out of ``_take`` as "a dropped item could not be opened and was discarded", then deletes
   the version on the server (owner.py:241).  But ``_take`` begins with ``make_dirs(self.vol,
   record.path, ...)`` (owner.py:251): the box's *own* folder.  When that folder is not a folder
   (moved away, a file in its place: ``Exists`` "Inbox is in the way", placing.py:80), not
   writable for her (``PermissionDenied``, an FsError), or refused by the vault (a store writer's
   damaged folder document: CorruptData), that is no defect of the item, yet every item of the box
   is judged garbage, one by one, and deleted for good: a friend's drop nobody can ever fetch again
   (only she could read it).  Seen: a friend's ``invoice.txt`` waiting; ``Shared/Inbox`` renamed
   and a file put at its name; one ``link collect`` says "a dropped item could not be opened and
   was discarded (Inbox is in the way: it is not a directory)"; folder put back, the next collect
   takes in 0 files: the invoice is gone.  The mount's collector does the same every minute on its
   own, so the window is a minute.  Who can cause it: she by a rename (a mistake costs every
   drop); a WRITE member of a shared folder holding the box (rename the box's folder and create a
   file there; read, not run); a store writer whose tampered folder document is refused.  Round
   22b (4)'s "one item's defect discards that item" turned into "one folder problem discards all".
   Fix: resolve the box's folder outside the per-item ``try`` and let its errors postpone the box
   (a VaultError that is not the item's); count as the item's own only what its manifest and blocks
   cause (``entries``, ``open_drop``, ``verified``, ``_held``, a name the vault refuses under the
   hidden temporary).
   Test: test_a_drop_box_whose_folder_is_in_the_way_does_not_discard_the_drops.

5. A ``LINK GET`` REFUSED HALF-WAY KEEPS THE SYMLINKS IT MADE, UNCHECKED: ONE VERSION, NO
   ``--OVERWRITE``, LEAVES ``photos/l`` POINTING AT HER HOME.  ``write_local`` makes every symlink
   as it comes in the list (checked by its text only) and checks them resolved only after the last
   entry (``_drop_links_leading_out``, content.py:212); any refusal before that -- a block that
   does not open, a file that does not match its SHA-256 (CorruptData, exit 5), the link store
   away, Ctrl-C -- leaves the ``try`` (content.py:193-215) without it, and nothing removes what was
   made.  The link's owner lists ``photos/d -> .`` (photos itself), ``photos/l -> d/..`` (by text
   ``photos``; resolved: the destination) and then a file whose block does not match.  Seen: ``link
   get`` at her home is refused ("a block of this link was changed or moved on the server") and
   ``photos/l`` stays, resolving to her home folder (it lists ``.ssh``).  Also: what the refused
   fetch had written stays (docs/SECURITY.md, "Capability links": "exit 5 with nothing written"
   holds only for a link whose first file is the bad one).
   Fix: run ``_drop_links_leading_out`` in a ``finally`` (or make symlinks only after every file is
   whole, then check them, as ``receive`` makes links last); better, fetch into a hidden folder
   and rename the top into place only when all is whole.
   Test: test_a_link_get_refused_half_way_leaves_no_symlink_leading_out_of_the_folder.

6. THE SAME IN ``RECEIVE``: A SYMLINK REFUSED HALF-WAY LEAVES THE ONES MADE BEFORE IT UNCHECKED.
   ``make_links`` (transfer/output.py:102-126) makes the sender's symlinks one by one and checks them
   resolved only after the loop (output.py:119); a link whose name is a folder the session's files
   made (``os.symlink`` EEXIST: "the sender's list has a symlink where a folder is",
   output.py:117) raises out of the loop first.  ``_checked`` and ``plan`` let such a list through
   (names unique; the folder does not exist yet at ``plan``).  The sender lists ``photos/d -> .``,
   ``photos/l -> d/..`` and ``photos/sub -> d`` besides a file ``photos/sub/a.jpg``.  Seen (the
   function receive.py:220 calls, with that list after the files): refused, and ``photos/l``
   stays, resolving to her output folder (her home: it lists ``.ssh``).  A resumed run does not
   repair it: ``make_links`` skips a link "an earlier run made" (output.py:110) without checking it
   again, and ``plan`` then refuses the folder at ``photos/sub``.
   Fix: check (and remove) every link made in a ``finally``; on a resume check the links an earlier
   run made too; and refuse in ``_checked`` a link whose name is a folder of a listed file.
   Test: test_a_receive_whose_links_are_refused_half_way_leaves_no_symlink_leading_out.

7. A DROPPED SYMLINK LEADS ANYWHERE ON HER MACHINE: A STRANGER'S ``invoice.pdf`` IN HER INBOX
   READS AS HER PRIVATE KEY.  ``link get`` and ``receive`` make a symlink only when it stays inside
   its folder (``link_stays_inside``, checked resolved too); the drop collector does not:
   ``_write_drop`` (links/owner.py:293) makes every symlink the dropper lists, any target
   (``entries`` checks only that it is a non-empty name without NUL), the top item itself
   included.  Anyone with the drop link (a stranger, by design) drops ``invoice.pdf ->
   /home/alice/.ssh/id_ed25519`` (absolute; or ``../../..`` up to her home through the mount).
   Seen: ``link collect`` ("took in 0 dropped file(s)", no word of a link) puts ``Inbox/invoice.pdf``
   in her vault, and reading it through the mount gives her private key.  Whatever she does with
   "the invoice she was sent" -- attach it to a reply, upload it, copy it to a share (a group's
   folder: ``cp`` follows it), publish the Inbox with ``link push`` from another device where the
   path exists -- sends her key.  In a shared mount (root's, model (e)) the link is also followed
   with the reading user's rights.
   Fix: in ``_write_drop`` (and for the top) make a symlink only when ``link_stays_inside`` its
   dropped folder and it resolves inside once all are made, as ``link get`` does; drop the others
   with a line in ``link collect``'s answer; a top-level symlink never (a drop of one link has no
   folder to stay in).
   Test: test_a_dropped_symlink_does_not_lead_out_of_the_box.

What held
---------
- ``_reach`` / ``_open_folder_at``: a symlink an older version (or she) left at any folder's place
  on the way is refused (ELOOP, CorruptData), never followed; a file at a folder's place is refused
  (ENOTDIR); a version-2 file listed under ``photos/l`` (a version-1 link to ``..``) is refused.
- ``_write_entry``: a file or symlink is made under a random hidden name O_EXCL|O_NOFOLLOW and
  renamed relative to the folder's descriptor: a symlink (or a hard link of hers) at the file's
  name is replaced, never written through (tried: her hard link keeps the old bytes); a file top
  over an existing folder of hers under ``--overwrite`` fails (a raw IsADirectoryError, so an
  "internal error" exit: a rough edge, not a hole), her folder untouched.
- ``_set_folder_modes``: only folders this fetch made (``made``) get the link's mode, reached
  again O_NOFOLLOW; an existing folder under ``--overwrite`` keeps hers.
- Descriptors: ``_reach`` closes every intermediate descriptor (``dup`` + close per part), the
  folder of each entry is closed in ``finally``; a long list costs O(entries x depth) opens, no
  descriptor kept open.
- Receive's partial files: the name is an HMAC under ``receive.key`` (not foreseeable by another
  local user), made O_EXCL|O_NOFOLLOW 0600; an existing one is taken only if a regular file of
  hers, one link, no access for others (checked on the descriptor); the final ``os.link`` never
  replaces a file that appeared meanwhile.  The resume file's name (``sha256(sid)``) is foreseeable:
  a file another user plants there makes her receive refuse to start (exit 11, a refusal, nothing
  written) -- a denial only.
- Terminal and log: ``DescriptionColumn`` renders with markup off and ``one_line(defused(..))``
  (tried on a forced terminal: ``[link=http://evil]x[/link] [/]``, OSC 52 and U+2028 in a task's
  description come out as text, ``\x1b]52...``, ``\u2028``); ``DefusedFormatter`` writes out every line
  break of a message and indents every traceback line, also under the journal formatter (each
  journal line then begins ``<N>  | ``); ``--json`` outputs are ``json.dumps`` (controls escaped);
  the link store's and relay's error texts pass ``shown`` (client.py ``_error``).
- ``link get`` symlinks in one version: a chain listed at once (``d -> .``, ``l -> d/..``) is caught
  by the resolved check when the fetch completes (hole 5 is the fetch that does not); a symlink
  top (``photos -> photos/x``) dangles and is dropped; ``d/../..`` from ``photos/l`` is refused by
  its text.
- Drop boxes, the vault side: a dropped folder's modes are not applied (``make_dirs`` 0755); the
  temporary name ``.fvdrop-<version id>`` and ``unique_name`` keep one item from another's name; a
  disk that fills (NoSpace) postpones the box, it discards nothing.
- Drop boxes (``_held``): a stranger cannot make her friend's item be refused: block ids are
  ``secrets.token_urlsafe(18)`` (not guessable), a version may own only blocks of its own box, and
  the sealed manifest is opened per item; a block the store will not serve discards only the item
  that named it.  The link store could make her lose drops by answering 403/404 for a real drop's
  block, but it can delete them outright anyway ("Withholding", conceded).

Seen, not made a test
---------------------
Nothing was seen only by a race.  Read, not run (races, so no strict xfail would be deterministic):
``link get`` of a folder top checks it new (content.py:191) and then ``mkdir``s it, taking one that
exists (content.py:230-233): a folder another user makes at that name in a shared destination in
that instant gets her files (hole 3's effect, by a race instead of a pause); ``receive`` reaches a
partial file's folder by path after ``mkdir_inside``'s lstat checks (receive.py:263-264), so in a
shared output folder *without* the sticky bit (where he may rename her top anyway) a folder swapped
for a symlink in that instant is followed.
"""

from __future__ import annotations

import hashlib
import os
import uuid
from pathlib import Path

import pytest
from conftest import fusevault, mounted, running_relay
from transfer_helpers import receive, sending

from fusevault.crypto import aead
from fusevault.encoding import b64e
from fusevault.errors import VaultError
from fusevault.links import capability, content
from fusevault.links.client import LinkClient
from fusevault.transfer.client import RelayClient
from fusevault.transfer.output import make_links
from fusevault.transfer.resume import ResumeState


class _Blocks:
    """What a link store serves for a manifest the link's owner made; ``meanwhile`` runs at the
    first block fetched (what happens on her disk while the download goes on)."""

    def __init__(self, dek: bytes, item: str, files: dict[int, bytes], meanwhile=lambda: None) -> None:
        self.sealed = {f"b{i}": capability.seal_block(dek, item, i, 0, data) for i, data in files.items()}
        self.meanwhile = meanwhile

    def block(self, block_id: str, read_key: bytes) -> bytes:
        self.meanwhile()
        return self.sealed[block_id]


def _link(kind: str, path: str, **fields) -> dict:
    mode = 0o777 if kind == "symlink" else 0o755
    return {"path": path, "type": kind, "mode": mode, "mtime_ns": 0, **fields}


# --- hole 1: an older version's symlink re-aimed out of the folder by a newer version's symlink


def test_link_get_overwrite_does_not_leave_an_older_versions_symlink_leading_out_of_the_folder(
        tmp_path: Path) -> None:
    home = tmp_path / "home"
    (home / ".ssh").mkdir(parents=True, mode=0o700)
    dek = aead.new_key()
    # Version 1: every symlink stays inside, by its text and resolved (photos/a/.. is photos).
    v1 = {"name": "photos", "key": b64e(dek), "entries": [
        _link("dir", "photos"), _link("dir", "photos/a"),
        _link("symlink", "photos/d", target="a"),
        _link("symlink", "photos/l", target="d/.."),
    ]}
    content.write_local(_Blocks(dek, "item", {}), b"r" * 32, "item", v1, home)  # type: ignore[arg-type]
    assert os.path.realpath(home / "photos" / "l") == os.path.realpath(home / "photos")  # kept, inside
    # Version 2 (the owner's next push): photos/d -> "." (by text and resolved: photos itself).
    v2 = {"name": "photos", "key": b64e(dek), "entries": [
        _link("dir", "photos"), _link("symlink", "photos/d", target="."),
    ]}
    try:  # she refreshes her copy: `fusevault link get LINK --overwrite`, at home
        content.write_local(_Blocks(dek, "item", {}), b"r" * 32, "item", v2, home,  # type: ignore[arg-type]
                            overwrite=True)
    except VaultError:
        pass  # refusing the version is fine
    top = os.path.realpath(home / "photos")
    real = os.path.realpath(home / "photos" / "l")
    assert not os.path.lexists(home / "photos" / "l") or real == top or real.startswith(top + "/"), (
        f"after `link get --overwrite`, the fetched folder's symlink photos/l leads out of it, to "
        f"{real} (her home: {sorted(os.listdir(home / 'photos' / 'l'))})")


# --- hole 2: `link get` without --overwrite replaces a file that appeared while it fetched


def test_link_get_without_overwrite_does_not_replace_a_file_that_appeared_during_the_fetch(
        tmp_path: Path) -> None:
    dest = tmp_path / "Downloads"
    dest.mkdir()
    data = b"the link's report\n" * 64
    hers = b"her own report.pdf, saved by her browser while the link was fetched\n"
    dek = aead.new_key()
    manifest = {"name": "report.pdf", "key": b64e(dek), "entries": [
        {"path": "report.pdf", "type": "file", "mode": 0o644, "mtime_ns": 0, "size": len(data),
         "sha256": hashlib.sha256(data).hexdigest(), "blocks": ["b0"]}]}

    def saved_meanwhile() -> None:
        if not (dest / "report.pdf").exists():
            (dest / "report.pdf").write_bytes(hers)

    try:  # `fusevault link get LINK` in her Downloads, no --overwrite
        content.write_local(_Blocks(dek, "item", {0: data}, saved_meanwhile), b"r" * 32, "item",  # type: ignore[arg-type]
                            manifest, dest)
    except VaultError:
        pass  # refusing (exit 11, as receive does) is fine
    assert (dest / "report.pdf").read_bytes() == hers, (
        "`link get` without --overwrite replaced her report.pdf, which appeared while the link was "
        "fetched: her file is lost")


# --- hole 3: a top claimed by an interrupted receive but not yet made: the resumed run writes into
# whatever folder another local user made at that name meanwhile


def test_a_resumed_receive_does_not_write_into_a_folder_another_user_made_at_a_claimed_top(
        transfer_relay: str, tmp_path: Path) -> None:
    (tmp_path / "src" / "videos").mkdir(parents=True)
    (tmp_path / "src" / "videos" / "holiday.txt").write_bytes(b"her family's video, not for mallory\n")
    shared = tmp_path / "incoming"  # a folder every local user may write, sticky (as /tmp)
    shared.mkdir()
    shared.chmod(0o1777)
    with sending(transfer_relay, tmp_path / "src" / "videos") as (sender, name, code):
        # What her first run left when it was cut off (Ctrl-C, the network) after claiming its tops
        # (plan(): every new top at once, "saved before the first is made") and before `videos`'s
        # first file arrived (made only then, receive.py one()): her own resume file, her key.
        sid = RelayClient(transfer_relay).join(name)["id"]
        state = ResumeState(shared, sid)
        state.save()
        state.claim(["videos"])
        # Meanwhile Mallory, another local user, makes a folder of his own at that name.
        (shared / "videos").mkdir()
        os.chown(shared / "videos", 4242, 4242)
        (shared / "videos").chmod(0o777)
        got = receive(transfer_relay, name, code, shared)  # she resumes: the same command
        if got.returncode == 0:
            sender.wait(60)
        # Refused, so the sender's session stays open for another try (--output): `sending` ends it.
    assert got.returncode in (0, 11) and "Traceback" not in got.stderr, got.stderr
    inside_his = sorted(os.listdir(shared / "videos"))
    assert (shared / "videos").stat().st_uid != 4242 or not inside_his, (
        f"the resumed receive wrote her files into a folder another local user made and owns "
        f"(he may rename, replace or delete them there): {inside_his} "
        f"(receive exit {got.returncode}: {got.stdout + got.stderr!r})")


# --- hole 4: a box whose folder cannot be written for a while discards, and deletes, every drop


@pytest.fixture(scope="module")
def relay(redis_url: str, couchdb_server: str):
    """A relay with its link store (one process for the module)."""
    with running_relay(redis_url, "--couchdb", f"{couchdb_server}/links{uuid.uuid4().hex[:8]}") as (_, url):
        yield url


def test_a_drop_box_whose_folder_is_in_the_way_does_not_discard_the_drops(
        relay: str, vault: Path, tmp_path: Path) -> None:
    with mounted(vault, tmp_path / "mnt") as mnt:
        box = mnt / "Shared" / "Inbox"
        drop = fusevault("link", "create", box, "--append", "--relay", relay).stdout.strip()
        # Her box's folder is not a folder for a while (moved away, a file in its place: what a WRITE
        # member of a shared folder may do too).  Before the drop: no collector (the mount's runs
        # every minute) can take the drop in before the folder is in the way.
        os.rename(mnt / "Shared" / "Inbox", mnt / "Shared" / "Inbox.old")
        (mnt / "Shared" / "Inbox").write_text("in the way\n")
        (tmp_path / "invoice.txt").write_text("pay me\n")
        dropped = fusevault("link", "push", tmp_path / "invoice.txt", drop, passphrase=None)
        assert dropped.returncode == 0, dropped.stderr
        first = fusevault("link", "collect", cwd=mnt)
        # Put back: the next collect should bring the friend's invoice.
        os.unlink(mnt / "Shared" / "Inbox")
        os.rename(mnt / "Shared" / "Inbox.old", mnt / "Shared" / "Inbox")
        second = fusevault("link", "collect", cwd=mnt)
        arrived = os.listdir(mnt / "Shared" / "Inbox")
    assert "invoice.txt" in arrived, (
        "the friend's drop was discarded and deleted from the link store because her box's folder was "
        f"in the way for one run: {first.stdout + first.stderr!r} / {second.stdout + second.stderr!r}")


# --- hole 5: a fetch refused half-way keeps the symlinks it made, unchecked


class _ChangedBlock:
    """A link store (or the link's owner) serving a block that is not the one the list names."""

    def __init__(self, dek: bytes, item: str, index: int) -> None:
        self.sealed = capability.seal_block(dek, item, index, 0, b"not what the list says")

    def block(self, block_id: str, read_key: bytes) -> bytes:
        return self.sealed


def test_a_link_get_refused_half_way_leaves_no_symlink_leading_out_of_the_folder(tmp_path: Path) -> None:
    home = tmp_path / "home"
    (home / ".ssh").mkdir(parents=True, mode=0o700)
    dek = aead.new_key()
    data = b"a photo\n"
    manifest = {"name": "photos", "key": b64e(dek), "entries": [
        _link("dir", "photos"),
        _link("symlink", "photos/d", target="."),      # by its text and resolved: photos itself
        _link("symlink", "photos/l", target="d/.."),   # by its text photos; resolved: her home
        {"path": "photos/z.jpg", "type": "file", "mode": 0o644, "mtime_ns": 0, "size": len(data),
         "sha256": hashlib.sha256(data).hexdigest(), "blocks": ["b0"]},
    ]}
    with pytest.raises(VaultError):  # `fusevault link get LINK` at home: exit 5, refused
        content.write_local(_ChangedBlock(dek, "item", 3), b"r" * 32, "item", manifest, home)  # type: ignore[arg-type]
    top = os.path.realpath(home / "photos")
    real = os.path.realpath(home / "photos" / "l")
    assert not os.path.lexists(home / "photos" / "l") or real == top or real.startswith(top + "/"), (
        f"the refused fetch left photos/l, a symlink leading out of the link's folder to {real} "
        f"(her home: {sorted(os.listdir(home / 'photos' / 'l'))})")


# --- hole 6: the same in receive: a symlink refused half-way leaves the ones made before it unchecked


def test_a_receive_whose_links_are_refused_half_way_leaves_no_symlink_leading_out(tmp_path: Path) -> None:
    home = tmp_path / "home"
    (home / ".ssh").mkdir(parents=True, mode=0o700)
    # What the session's files made: photos/sub/a.jpg (receive.py one(), before make_links).
    (home / "photos" / "sub").mkdir(parents=True)
    (home / "photos" / "sub" / "a.jpg").write_bytes(b"a photo\n")
    # The sender's list of links (his sealed manifest: names unique, each link inside by its text);
    # the last one names a folder the files made.
    links = [{"name": "photos/d", "target": "."}, {"name": "photos/l", "target": "d/.."},
             {"name": "photos/sub", "target": "d"}]
    try:  # receive.py:220, the last step of `fusevault receive NAME --output ~`
        make_links(home, links, lambda line: None)
    except VaultError:
        pass  # refused (exit 5): fine
    top = os.path.realpath(home / "photos")
    real = os.path.realpath(home / "photos" / "l")
    assert not os.path.lexists(home / "photos" / "l") or real == top or real.startswith(top + "/"), (
        f"the refused receive left photos/l, a symlink leading out of the sender's folder to {real} "
        f"(her home: {sorted(os.listdir(home / 'photos' / 'l'))})")


# --- hole 7: a dropped symlink leads anywhere on her machine


def test_a_dropped_symlink_does_not_lead_out_of_the_box(relay: str, vault: Path, tmp_path: Path) -> None:
    secret = tmp_path / "home" / ".ssh" / "id_ed25519"
    secret.parent.mkdir(parents=True)
    secret.write_text("-----BEGIN OPENSSH PRIVATE KEY----- hers\n")
    with mounted(vault, tmp_path / "mnt") as mnt:
        drop = capability.parse(
            fusevault("link", "create", mnt / "Inbox", "--append", "--relay", relay).stdout.strip())
        # A stranger with the drop link drops "invoice.pdf": a symlink to her private key.
        (tmp_path / "stranger").mkdir()
        (tmp_path / "stranger" / "invoice.pdf").symlink_to(secret)
        with LinkClient(drop.server) as client:
            manifest, blocks = content.upload(client, drop.item, drop.first,
                                              content.local_sources(tmp_path / "stranger" / "invoice.pdf"))
            sealed = capability.seal_drop(drop, manifest)
            client.add_version(drop.item, drop.first, {**sealed, "blocks": blocks})
        collected = fusevault("link", "collect", cwd=mnt)
        shown_as = sorted(os.listdir(mnt / "Inbox"))
        dropped = mnt / "Inbox" / "invoice.pdf"
        reads = dropped.read_bytes() if os.path.exists(dropped) else b""
    assert b"PRIVATE KEY" not in reads, (
        f"a dropped 'invoice.pdf' in her Inbox reads her private key (a symlink to {secret}): "
        f"{shown_as} ({collected.stdout + collected.stderr!r})")
