"""Attack round 78c, an outsider: whoever can write the vault folder (store.sqlite, vault.json, users/,
groups/), between her mounts, through the real ``fusevault`` command and real mounts.

Hole (1), low (a command crashes: ``fusevault check``, the fsck meant for a tampered vault, ends in
  "internal error" and ``export --vault`` prints a Python traceback): one ``places`` row of store.sqlite.
  Attacker: a writer of the vault folder (no key).
  Steps: alice writes big.bin (100,000 bytes) and unmounts; the attacker sets the row of big.bin's
    block 0 in ``places`` to ``arrived = 1`` with ``length`` a text ('abc'), a huge number (2**40) or a
    negative one (-5); she runs ``fusevault check VAULT`` (or ``--repair``), or ``export --vault``.
  Seen: check: "fusevault: internal error (TypeError: unsupported operand type(s) for +: 'int' and
    'str'); please report it with .../crash-....log" (MemoryError for 2**40, OSError EINVAL for -5), exit
    70, nothing of what is damaged reported, ``--repair`` the same; ``export --vault VAULT big.bin DIR``
    with 2**40: "request export failed" and a 45-line traceback on her terminal (MemoryError in
    ``os.pread``).  (The mount itself holds: big.bin reads EIO, the other files read, the log says it.)
  Expected: check reports big.bin damaged (its record's place is not one fusevault writes) and goes
    on; export says the file could not be read (EIO, one line).
  Cause: store/places.py ``Places.arrived_of`` returns each arrived row's ``offset``/``length`` as
    stored, unchecked (``copies_of`` checks its rows since 50a (4), ``checked_runs`` the punched ones);
    vault/files/content.py ``Content.where`` hands them to ``os.pread`` (content.py ``_stored_block``,
    ``_manifest_root``, the run read at 567); services/check.py ``_version_contents`` adds them
    (``used.append((offset, offset + length))``) outside its ``except``, and the pread's MemoryError /
    TypeError / OSError escape ``_version_contents``'s and the export's catches.
  Impact: the command she runs to find out what was tampered with fails with an internal error and
    says nothing of the damage; a traceback on her terminal; any file's reads EIO for good (that much
    is detection).  gc too: with the row on a file of two versions (the older one due to go), ``fusevault
    gc --as-of 2099-01-01 MOUNT`` answers "fusevault: internal error: see the mount's log" (gc.py
    ``used_ranges``: ``offset + length``), and so would the mount's own gc runs, at that file each time
    (``collect``'s loop over her files, gc.py 213, has no catch per file: each run ends there, and the
    files after it, and the trash (purged after that loop), are never collected: read, not run).
  Fix (suggested): ``arrived_of`` checks each row as ``_checked_copy`` does (int, 0 <= offset, length
    <= _HIGHEST, length at most a record's most: a block's size plus its seal, or a manifest node's
    bound) and leaves a bad one out (said once), so the read finds no place and is refused (EIO) as a
    damaged record; check then says "damaged".
  Tests: ``test_78c_1_a_planted_places_row_does_not_crash_check[abc|2**40|-5]``,
    ``test_78c_1_a_planted_places_row_does_not_crash_export``,
    ``test_78c_1_a_planted_places_row_does_not_crash_gc`` (strict xfails); control
    ``test_78c_1_control_the_mount_serves_beside_a_planted_places_row`` (passes).

Hole (2), medium (a live file, or a folder with all it holds, removed unnoticed): a tombstone flag.
  Attacker: a writer of the vault folder (no key).
  Steps: alice writes keep.txt, then victim.txt, unmounts; the attacker runs
    ``UPDATE docs SET deleted = 1 WHERE id = <victim's fid>`` (no signature needed: the column is clear);
    she mounts.
  Seen: victim.txt is gone from her mount, ``fusevault status`` lists no alarm, nothing is logged,
    ``fusevault check`` says "0 damaged file(s)" and counts victim's bytes as unreferenced ("`fusevault
    gc` frees what old versions held"): not in the trash.  A folder's row so flagged: the folder and
    everything under it (whose own rows are intact) vanish, unsaid too (the root's row so flagged is
    said: "the root folder's document is missing").  (A ``gc`` run right after freed nothing yet.)
    The same file's row removed outright (``DELETE FROM docs``) is said (``vanished``:
    tests/mount/test_trust_rollback.py::test_a_deleted_node_row_is_reported_as_vanished), and the same
    bare deletion sent by a sync server is refused and said (replicator ``_deletion_taken``, round 18).
  Expected: as for the row removed: a ``vanished`` (or rollback) alarm naming the file this device saw
    live and not in the trash; better, the tombstone refused as the server's is (the node kept).
  Cause: vault/model/ledger.py ``_missing``: a file the ledger saw live whose row is a tombstone
    (``_tombstone``) is taken as "gc removed it from the trash, here or on a peer" and recorded not live,
    unsaid, whether or not this device ever saw it trashed; a peer's such deletion never gets stored
    (the replicator refuses it), so locally only the vault folder's writer makes one.
  Impact: any file (or folder, and so all under it) of hers vanishes at her next mount with no word,
    which SECURITY.md ("Rollback": "A node row removed from the store ... reported as vanished") says is
    caught; check calls its records unreferenced, space for gc to free.
  Fix (suggested): in ``_missing``, a tombstone over a file the ledger last saw live and not trashed
    (``owner_trashed`` / the trash state it recorded) is said (``vanished``, "deleted in the store
    without passing the trash") exactly as a removed row is; its gc purge honest path passes the trash
    first, so ``test_deleting_and_emptying_the_trash_raise_no_alarm`` keeps passing.
  Tests: ``test_78c_2_a_live_files_row_flagged_deleted_is_said``,
    ``test_78c_2_a_live_folders_row_flagged_deleted_is_said`` (strict xfails).

Hole (3), medium (a live file removed unnoticed, its signed body untouched): the clear ``type`` column.
  Attacker: a writer of the vault folder (no key).
  Steps: as (2), but ``UPDATE docs SET type = NULL`` (or ``'FilesMetaData'``) ``WHERE id = <victim>``;
    the row's body (sealed, signed, live) is left as it was.
  Seen: victim.txt not shown, no alarm, nothing logged; check: "0 damaged file(s)", its records
    unreferenced.  (Column ``'Share'``: "refused a malformed Share document" is said, the file still
    not shown; ``'UserDetails'``: check says "1 refused document", the mount nothing.)
  Expected: the file shown (its body is hers, live, and verifies), or said missing as (2).
  Cause: store/local.py ``iter_type`` picks the tree's node rows by the clear ``type`` column
    (``WHERE type = ?``), while ``get`` (which the ledger's ``_missing`` uses) reads the body by id: the
    ledger finds a live body of hers that the tree never loaded and takes it, in ledger.py ``_missing``'s
    last branch, for "in the trash, or a share that no longer reaches this user" (``_trashed_by_owner``,
    recorded not live), unsaid.
  Impact: as (2): any file or folder of hers hidden with no word by one clear column (one UPDATE of
    every node row but the root would hide her whole tree: not run).  The same column on her newest
    version's ``FilesMetaData`` row: the mount reads the file as before (the node names its head, read
    by id) and says nothing, but ``history`` lists only the older version and ``check`` says "the
    document of its current version is missing ... `fusevault check --repair` points them at their last
    intact version"; run, ``--repair`` "restored version <older> ... as its newest version": her own
    signed commit rolls the file back to the older contents on every device, and the newest leaves her
    history (run by hand: tax-2026.txt read "hello-secret" again after the repair).  The same end
    comes from deleting the row, but then the mount says EIO and an alarm first; here the file is
    intact and only ``check`` calls it damaged.
  Fix (suggested): ``_missing`` says (``vanished``/``malformed``) a live, not trashed body of hers that
    the tree did not load; or the store derives ``type`` from the body when it reads (``iter_type``
    filtering on ``json_extract(body, '$.type')``, the column an index hint only).
  Fix, for versions: ``by_file`` (``lineage``, check, history) selects by the body's ``type``, not the
    column; check calls a version missing only when ``get`` of its id finds nothing.
  Tests: ``test_78c_3_a_live_files_row_with_another_type_column_is_said[null|FilesMetaData]``,
    ``test_78c_3_a_version_row_with_another_type_column_is_not_called_missing`` (strict xfails).

Hole (4), medium (her sync stops pushing for good; only "internal error" is said): the same kind of
  ``places`` row as (1), on the push side.
  Attacker: a writer of the vault folder (no key), her sync server honest.
  Steps: alice's vault syncs with a CouchDB-protocol server (pouchdb-server); a.txt is pushed; between
    mounts the attacker inserts one ``places`` row of a.txt's version (idx 7, ``arrived`` 0, offset 0,
    length 2**40); she mounts and writes b.txt.
  Seen: ``sync status``: the peer's error "internal error: see the mount's log", 6 documents waiting;
    the server holds 2 node documents (root, a.txt): b.txt never reaches it.  Every later push starts
    with the records since the checkpoint (replicator.py ``_push_records``, before any document), meets
    the same row and fails the same way, so nothing she writes is pushed again, on this or any later
    mount, until the row goes.
  Expected: the row left out (a record that is not one is not sent), or at worst said as such; the
    documents pushed.
  Cause: sync/content_docs.py ``read_records``: ``os.pread(fd, row.length, row.offset)`` with the row's
    clear ``length``/``offset`` (store/places.py ``since``: unchecked), catching only CorruptData around
    the open; MemoryError (2**40), TypeError (a text), OSError EINVAL (negative) escape the push.
  Impact: her other devices, her backup and members never see her changes again; she sees only an
    internal error in ``sync status``; a writer of a USB disk or a synced folder stops her sync to a
    server he does not control.
  Fix (suggested): ``since``/``read_records`` check each row as ``_checked_copy`` does (and a length at
    most a record's bound); a bad row is skipped, said once, and the checkpoint moves past it.
  Test: ``test_78c_4_a_planted_places_row_does_not_stop_her_push`` (strict xfail).

Tried and held (run by hand through the real command, not kept): ``docs`` body ``[]`` (left out,
check: "1 refused document"); ``docs.rev`` an integer, ``revs`` not JSON (served as before); a
``places`` row's ``idx`` a text (EIO); ``local_docs`` device body with ``../`` and a newline (unused
by the tree); vault.json ``created_at`` 10**400 or text, ``format`` true (taken as 1, rewritten),
``store`` with an extra key (refused: the device's marker pin), ``padding`` a list (one line); her
UserDetails with another ``kdf`` (the device's remembered key fields apply; said: rollback of her keys,
unsigned settings), a name with escapes and a huge uid (``user list`` shows it quoted); a fresh state
directory with ``memory_kib`` 8.5 ("the key material ... is damaged"); a stray ``zz.vf``, a 100,000-deep
``.vfmeta``, a ``.vf`` made a 1 TiB sparse file (all served; check counts the hole as unreferenced);
the head version row flagged deleted (EIO and an alarm: said); ``leaves`` rows of her file with
``revs`` not JSON, a list body or an integer rev (the mount serves, her push goes on: run through
pouchdb-server, not kept); ``check --repair`` of a file whose node body was made unreadable after she
moved it out of a folder she shared with bob since (check names the old path, the repair puts it back
where this device last saw it and seals nothing to bob).  Read, not run: ``vault.lock`` and
``store.sqlite`` as links or pipes (opening.py ``_lock_file``, local.py ``_no_link``).  Noted, not a
hole: an arrived ``places`` row naming another place makes her gc (services/gc.py ``used_ranges`` reads
``Content.where``) punch the real record of a version it keeps when it drops an older one: data lost,
but no more than the writer could do by punching the ``.vf`` himself (not run).
Clear text seen in the folder (documented): user name, uid, creation times, padded sizes (the last
block's length in ``places``), file ids and version counts.
Not tried (time): the shared mount (root) with its store watcher; rows changed while she is mounted;
conflict branches beyond malformed rows; meta.inf / key files of two times mixed; groups/.

Run (-n 0, this file, 2026-12-07 ~17:47 UTC): 1 passed, 11 xfailed (~35 s); with --runxfail the 11 fail
at their own assertions, the control passes.
Fixed (round 78c's fixer, docs/SECURITY.md "Round 78c (1)-(4)"): the xfails flipped; a control added for
(2) (``test_78c_2_control_her_purge_on_her_other_device_raises_no_alarm``).
"""

from __future__ import annotations

import sqlite3
from pathlib import Path

import adversary
import pytest
from conftest import (
    first_device,
    fusevault,
    mount_status,
    mounted,
    new_device,
    settled,
    sync_answer,
    wait_for,
)


def _big_file(vault: Path, tmp_path: Path) -> str:
    """big.bin (100,000 bytes, 7 blocks) and small.txt written through a real mount; big.bin's fid."""
    with mounted(vault, tmp_path / "mnt") as mnt:
        (mnt / "small.txt").write_bytes(b"small and intact")
        (mnt / "big.bin").write_bytes(bytes(range(256)) * 390 + b"tail")
    db = sqlite3.connect(vault / "store.sqlite")
    try:
        (fid,) = {f for (f,) in db.execute("SELECT fid FROM places GROUP BY fid HAVING COUNT(*) > 3")}
    finally:
        db.close()
    return fid


def _plant_place(vault: Path, fid: str, length: object) -> None:
    """The attacker's one row: big.bin's block 0 said to have arrived from a peer, at ``length``."""
    db = sqlite3.connect(vault / "store.sqlite")
    try:
        changed = db.execute("UPDATE places SET arrived = 1, length = ? WHERE fid = ? AND idx = 0",
                             (length, fid)).rowcount
        db.commit()
    finally:
        db.close()
    assert changed == 1


@pytest.mark.parametrize("length", ["abc", 2**40, -5], ids=["abc", "2**40", "-5"])
def test_78c_1_a_planted_places_row_does_not_crash_check(vault: Path, tmp_path: Path, length: object) -> None:
    fid = _big_file(vault, tmp_path)
    _plant_place(vault, fid, length)
    result = fusevault("check", vault)
    said = result.stdout + result.stderr
    assert "internal error" not in said and "Traceback" not in said, said[-400:]
    assert result.returncode == 26 and "1 damaged file(s)" in said and "big.bin" in said, said[-400:]


def test_78c_1_a_planted_places_row_does_not_crash_export(vault: Path, tmp_path: Path) -> None:
    fid = _big_file(vault, tmp_path)
    _plant_place(vault, fid, 2**40)
    out = tmp_path / "out"
    out.mkdir()
    result = fusevault("export", "--vault", vault, "big.bin", out)
    said = result.stdout + result.stderr
    assert result.returncode != 0, "the scene: big.bin cannot be read"
    assert "Traceback" not in said and "internal error" not in said, said[:600]
    assert len(said.strip().splitlines()) <= 2, said[:600]


def test_78c_1_a_planted_places_row_does_not_crash_gc(vault: Path, tmp_path: Path) -> None:
    mnt = tmp_path / "mnt"
    with mounted(vault, mnt):
        (mnt / "plan.txt").write_bytes(b"first")
    with mounted(vault, mnt):
        (mnt / "plan.txt").write_bytes(b"second, the newest")
    db = sqlite3.connect(vault / "store.sqlite")
    try:  # the attacker: the newest version's block 0 said to have arrived, at a length that is text
        (vid,) = db.execute("SELECT vid FROM places WHERE idx = 0 ORDER BY n DESC LIMIT 1").fetchone()
        assert db.execute("UPDATE places SET arrived = 1, length = 'abc' WHERE vid = ? AND idx = 0",
                          (vid,)).rowcount == 1
        db.commit()
    finally:
        db.close()
    with mounted(vault, mnt):
        result = fusevault("gc", "--as-of", "2099-01-01", mnt)  # the older version is dropped
        said = result.stdout + result.stderr
        assert "internal error" not in said, said[-400:]


def test_78c_1_control_the_mount_serves_beside_a_planted_places_row(vault: Path, tmp_path: Path) -> None:
    fid = _big_file(vault, tmp_path)
    _plant_place(vault, fid, "abc")
    with mounted(vault, tmp_path / "mnt") as mnt:
        assert (mnt / "small.txt").read_bytes() == b"small and intact"
        with pytest.raises(OSError) as err:
            (mnt / "big.bin").read_bytes()
        assert err.value.errno == 5  # EIO: detected, never other bytes
        (mnt / "new.txt").write_bytes(b"still writes")
        assert (mnt / "new.txt").read_bytes() == b"still writes"


def test_78c_2_a_live_files_row_flagged_deleted_is_said(vault: Path, tmp_path: Path) -> None:
    mnt = tmp_path / "mnt"
    with mounted(vault, mnt):
        (mnt / "keep.txt").write_bytes(b"kept")
    before = {d["_id"] for d in adversary.docs(vault, "node")}
    with mounted(vault, mnt):
        (mnt / "victim.txt").write_bytes(b"to be made to vanish")
    (fid,) = [d["_id"] for d in adversary.docs(vault, "node") if d["_id"] not in before]
    _flag_deleted(vault, fid)
    with mounted(vault, mnt):
        assert (mnt / "keep.txt").read_bytes() == b"kept"
        assert not (mnt / "victim.txt").exists(), "the scene: the file is gone from her mount"
        found = [(a["kind"], a["subject"]) for a in mount_status(mnt)["alarms"]]
        assert any(subject == fid for _, subject in found), (
            f"victim.txt ({fid}), live and not in the trash when this device last saw it, vanished "
            f"with no alarm; alarms: {found}")


def _flag_deleted(vault: Path, fid: str) -> None:
    db = sqlite3.connect(vault / "store.sqlite")
    try:  # the attacker: one clear column, no key, no signature
        assert db.execute("UPDATE docs SET deleted = 1 WHERE id = ?", (fid,)).rowcount == 1
        db.commit()
    finally:
        db.close()


def test_78c_2_a_live_folders_row_flagged_deleted_is_said(vault: Path, tmp_path: Path) -> None:
    mnt = tmp_path / "mnt"
    with mounted(vault, mnt):
        (mnt / "keep.txt").write_bytes(b"kept")
    before = {d["_id"] for d in adversary.docs(vault, "node")}
    with mounted(vault, mnt):
        (mnt / "taxes").mkdir()
    (folder,) = [d["_id"] for d in adversary.docs(vault, "node") if d["_id"] not in before]
    with mounted(vault, mnt):
        (mnt / "taxes" / "2026.txt").write_bytes(b"what she owes")
    _flag_deleted(vault, folder)
    with mounted(vault, mnt):
        assert (mnt / "keep.txt").read_bytes() == b"kept"
        assert not (mnt / "taxes").exists(), "the scene: the folder and what it holds are gone"
        found = [(a["kind"], a["subject"]) for a in mount_status(mnt)["alarms"]]
        assert found, f"taxes/ ({folder}) and 2026.txt, live when this device last saw them, vanished unsaid"


def test_78c_2_control_her_purge_on_her_other_device_raises_no_alarm(couchdb_url: str,
                                                                    tmp_path: Path) -> None:
    """The honest tombstone: old.txt trashed and purged (gc) on her laptop while her desktop is mounted
    and takes both; the desktop's next mount says nothing of it (only a tombstone over a file its ledger
    saw live is said)."""
    laptop, a, b = first_device(couchdb_url, tmp_path), tmp_path / "a", tmp_path / "b"
    with mounted(laptop, a):
        (a / "keep.txt").write_bytes(b"kept")
    before = {d["_id"] for d in adversary.docs(laptop, "node")}
    with mounted(laptop, a):
        (a / "old.txt").write_bytes(b"to be purged")
        wait_for(lambda: settled(a), "the first push")
    (fid,) = [d["_id"] for d in adversary.docs(laptop, "node") if d["_id"] not in before]
    desktop = new_device(couchdb_url, tmp_path, "desktop")
    with mounted(desktop, b):
        wait_for(lambda: (b / "old.txt").exists() and settled(b), "old.txt on the desktop")
        with mounted(laptop, a):
            (a / "old.txt").unlink()
            wait_for(lambda: settled(a) and not (b / "old.txt").exists(), "the trash reaches the desktop")
            assert fusevault("gc", "--as-of", "2099-01-01", a).returncode == 0
            wait_for(lambda: settled(a), "the purge pushed")
        wait_for(lambda: _deleted(desktop, fid), "the purge taken on the desktop")
    with mounted(desktop, b):
        assert (b / "keep.txt").read_bytes() == b"kept"
        found = [(x["kind"], x["subject"]) for x in mount_status(b)["alarms"]]
        assert not any(subject == fid for _, subject in found), found


def _deleted(vault: Path, doc_id: str) -> bool:
    db = sqlite3.connect(vault / "store.sqlite")
    try:
        row = db.execute("SELECT deleted FROM docs WHERE id = ?", (doc_id,)).fetchone()
    finally:
        db.close()
    return row is not None and row[0] == 1


@pytest.mark.parametrize("kind", [None, "FilesMetaData"], ids=["null", "FilesMetaData"])
def test_78c_3_a_live_files_row_with_another_type_column_is_said(vault: Path, tmp_path: Path,
                                                                  kind: str | None) -> None:
    mnt = tmp_path / "mnt"
    with mounted(vault, mnt):
        (mnt / "keep.txt").write_bytes(b"kept")
    before = {d["_id"] for d in adversary.docs(vault, "node")}
    with mounted(vault, mnt):
        (mnt / "victim.txt").write_bytes(b"to be made to vanish")
    (fid,) = [d["_id"] for d in adversary.docs(vault, "node") if d["_id"] not in before]
    db = sqlite3.connect(vault / "store.sqlite")
    try:  # the attacker: the clear ``type`` column only; the signed, sealed body is untouched
        assert db.execute("UPDATE docs SET type = ? WHERE id = ?", (kind, fid)).rowcount == 1
        db.commit()
    finally:
        db.close()
    with mounted(vault, mnt):
        assert (mnt / "keep.txt").read_bytes() == b"kept"
        shown = (mnt / "victim.txt").exists()
        found = [(a["kind"], a["subject"]) for a in mount_status(mnt)["alarms"]]
        assert shown or any(subject == fid for _, subject in found), (
            f"victim.txt ({fid}), its body intact and live, is not shown, unsaid; alarms: {found}")


def test_78c_3_a_version_row_with_another_type_column_is_not_called_missing(vault: Path,
                                                                             tmp_path: Path) -> None:
    mnt = tmp_path / "mnt"
    with mounted(vault, mnt):
        (mnt / "plan.txt").write_bytes(b"first")
    with mounted(vault, mnt):
        (mnt / "plan.txt").write_bytes(b"second, the newest")
    versions = adversary.docs(vault, "FilesMetaData")
    assert len({v["fid"] for v in versions}) == 1 and len(versions) == 2, "the scene: plan.txt's two versions"
    head = max(versions, key=lambda v: _seq(vault, v["_id"]))  # the one written last
    db = sqlite3.connect(vault / "store.sqlite")
    try:  # the attacker: the head version row's clear ``type`` column; its signed body untouched
        assert db.execute("UPDATE docs SET type = NULL WHERE id = ?", (head["_id"],)).rowcount == 1
        db.commit()
    finally:
        db.close()
    with mounted(vault, mnt):
        assert (mnt / "plan.txt").read_bytes() == b"second, the newest", "the scene: the mount reads it"
    result = fusevault("check", vault)
    said = result.stdout + result.stderr
    assert "0 damaged file(s)" in said, (
        "her intact newest version, its body in the store, is called missing (and `check --repair` would "
        f"restore the older one as the newest): {said[-500:]}")


def _seq(vault: Path, doc_id: str) -> int:
    db = sqlite3.connect(vault / "store.sqlite")
    try:
        (seq,) = db.execute("SELECT seq FROM docs WHERE id = ?", (doc_id,)).fetchone()
    finally:
        db.close()
    return int(seq)


def _peer(mnt: Path) -> dict:
    (peer,) = sync_answer(mnt)["peers"]
    return peer


def test_78c_4_a_planted_places_row_does_not_stop_her_push(couchdb_url: str, tmp_path: Path) -> None:
    vault = first_device(couchdb_url, tmp_path)
    mnt = tmp_path / "mnt"
    with mounted(vault, mnt):
        (mnt / "a.txt").write_bytes(b"pushed before")
        wait_for(lambda: settled(mnt), "the first push")
    db = sqlite3.connect(vault / "store.sqlite")
    try:  # the attacker: one more row of a.txt's version, at a length no record has
        fid, vid, owner = db.execute("SELECT fid, vid, owner FROM places WHERE idx = 0").fetchone()
        db.execute("INSERT INTO places (fid, vid, idx, owner, offset, length) VALUES (?, ?, 7, ?, 0, ?)",
                   (fid, vid, owner, 2**40))
        db.commit()
    finally:
        db.close()
    server = adversary.Server(couchdb_url)
    with mounted(vault, mnt):
        (mnt / "b.txt").write_bytes(b"her next file")
        # Either way this ends: the push is done (nothing pending, no error), or it failed (an error).
        wait_for(lambda: _peer(mnt)["error"] is not None or settled(mnt), "the push's end")
        peer = _peer(mnt)
        nodes_there = len(server.all("node"))
        assert peer["error"] is None and peer["pending_up"] == 0, (
            f"her push stopped at the planted row: error {peer['error']!r}, {peer['pending_up']} "
            f"document(s) waiting; node documents on the server: {nodes_there}")
