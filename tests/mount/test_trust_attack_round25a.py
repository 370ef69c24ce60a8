"""Attack round 25a on the vault-side fixes of round 24 (fs/arrivals.py ``_typed`` / ``Guests.kinds``;
the ledger's ``owner_trashed`` and authorship ``_back_from_owners_trash``; ``Inodes.read_call`` /
``LocalStore.reading``; the per-user ``Requests.turn``), from the server / sync peer / store writer side.
Real mounts, the real ``fusevault`` command, a pouchdb-server of the test's own.

Status: every hole below is fixed and its test passes (the ledger changes ``owner_trashed`` only from a state
it takes; another owner's state that does not open here is judged by the key epoch she signed,
``Ledger.under_older_key``); docs/SECURITY.md "Attack round 25" says what holds now.

Holes
-----
1. THE SERVER REPLAYING THE OWNER'S OLD SIGNED DELETION TAKES HER RESTORED FILE FROM A READER'S MOUNTED
   DEVICE, NOTHING SAID.  alice deletes docs/notes.txt (shared: bob WRITE, carol READ) and restores it;
   carol's device sees it live (the restored state, newer).  The server then serves alice's deletion
   document again (genuine, signed by her, older than the restored state) as a revision after it.  On
   carol's mounted device ``absorb_node`` gets ``opened`` None for it (a document with ``delete`` does not
   open for a grantee), so vault/model/ledger.py:464-465 (``admit``: ``if fresh is None: return True``)
   admits it without the ``older`` check every live state gets, and vault/services/absorbing.py:234
   (``leave``) takes the file out of her tree: shared/alice/docs/notes.txt is gone, no rollback alarm, no
   alarm at all (checked for 5 s after it left; and at her next mount the file is still not shown and
   ``status`` lists no alarm: run, not kept).  SECURITY.md "Rollback": "A file put back in an older
   state in the store ... reported ... naming the file"; "Withholding": "A device that saw them reports
   what vanished".  The owner's own device refuses her replayed deletion (round 18); a grantee's does not.
   Impact: a server (or a sync peer) hides any file of another owner that was ever deleted and restored
   from every reader's device, silently, for as long as it likes, and (hole 2) locks writers out of it.
   Fix: in ``Ledger.admit`` judge a trashing state of another owner by its signed ``seq`` (open its
   sealed attributes with the key the tree holds, or keep the seq the tree's node has) before it is
   admitted: an older one is a rollback, refused and said, and the tree keeps the file.
   Test: test_a_replayed_old_deletion_of_hers_does_not_silently_take_her_file_from_a_readers_device.

2. THE SAME REPLAY SETS ``owner_trashed`` ON THE READER'S DEVICE: EVERY LATER GENUINE WRITE OF A WRITER OF
   THE FOLDER IS REFUSED THERE AS A FORGERY ("brings it back from the trash of its owner").
   vault/model/ledger.py:463 (``admit``) calls ``_trashed_by_owner(fid, doc)`` before any check that the
   state is not older than one seen (and ledger.py:736 at load does the same for a document not in the
   tree): a replayed signed ``delete: true`` of the owner's marks the file as in her trash again, although
   carol's device saw the newer restored state.  Then bob's genuine document (WRITE on docs, her file left
   where it is, only its mtime moved, her placement stamp as it was) reaches
   vault/tree/authorship.py:247 ``_back_from_owners_trash``: refused, ``forged-write`` naming bob, and (with
   hole 1) the file stays away.  Round 24a's price ("a writer's rename ... arriving on a reader's device
   that saw her deletion but not her restore") does not cover this: carol saw the restore; only the
   server's replay put the mark back.  Impact: a denial (the writers of a folder are locked out of her
   file on every reader's device the server chooses, until alice changes it again) and a false
   accusation of forgery against a genuine writer.
   Fix: note ``owner_trashed`` only for a state that ``admit`` takes (after the ``older`` check; at load
   only when ``check_loaded`` finds it no older than seen), never for a refused replay.
   Test: test_a_replayed_old_deletion_of_hers_does_not_lock_a_writer_out_of_her_file_on_a_readers_device
   [True] (the hole; [False], the same write with no replay, is the passing control).

3. THE SAME AT LOAD: A WRITER OF THE READER'S VAULT FOLDER PUTS THE OWNER'S OLD DELETION BACK AND, AT
   HER NEXT MOUNT, THE FILE IS GONE, NOTHING SAID.  vault/model/ledger.py:706 ``_missing`` (a file the
   ledger saw live, not in the loaded tree) checks ``older`` only for a deletion of the user's OWN file
   (``doc.get("owner") == volume.key.user_id``); for another owner's it only notes ``_trashed_by_owner``
   (hole 2's mark, too) and records the file not live.  So carol's device, which saw alice's restored
   state, takes the replayed deletion at unlock as the truth: shared/alice/docs/notes.txt missing, no
   rollback alarm (``status`` lists none), the server not even reachable.  Same impact as hole 1, by a
   store writer (a backup, a cloud folder) instead of the server.
   Fix: as hole 1's, in ``_missing``: open the trashing state's signed ``seq`` (the grantee's key files
   still open it) and report an older one as a rollback (the tree cannot show it without its live body;
   at least said, the file named), never note ``owner_trashed`` from it.
   Test: test_her_old_deletion_put_into_a_readers_store_does_not_silently_hide_her_file_at_the_next_mount.

4. THE REVERSE: A REPLAY OF THE OWNER'S OLDER LIVE STATE CLEARS ``owner_trashed``, AND A WRITER THEN BRINGS
   HER TRASHED FILE BACK ON THE READER'S DEVICE AS HERS (ROUND 24a HOLE 3 REOPENED).  Same line,
   vault/model/ledger.py:463: ``_trashed_by_owner`` runs before ``older``, so alice's older signed body
   with ``delete: false`` (her state before she put docs/notes.txt in her trash) served again by the
   server drops the mark although ``admit`` then refuses that body as a rollback.  bob's document (WRITE
   on docs) putting the file back live in docs, signed by him, is then no longer judged by
   ``_back_from_owners_trash`` (authorship.py:247) and is taken in: carol's device shows
   shared/alice/docs/notes.txt again as alice's file, with what bob chose (here her last text; any
   version he may sign as a writer of docs).  Said: only the rollback of the replayed body (naming the
   file id); bob's bring-back itself passes unsaid.  Without the replay the same document is refused
   (``forged-write``: the passing control).
   Fix: hole 2's (the mark follows only states ``admit`` takes).
   Test:
   test_a_replayed_live_state_of_hers_does_not_let_a_writer_bring_back_her_trashed_file_on_a_readers_device
   [True] (the hole; [False] is the control).

What held
---------
- Round 24a (3)'s refusal itself: with no replay, bob's document bringing back her trashed file on
  carol's device is refused (``forged-write``): kept as the control of hole 4.  With no replay, bob's
  genuine write of her restored file (mtime moved, her stamp as it was) is taken in on carol's device:
  kept as the control of hole 2.
- The replayed deletion and the replayed live state are both refused by ``admit``'s ``older`` check when
  the state opens here (the rollback alarm of hole 4 says so): the holes are only in what runs before
  that check (``_trashed_by_owner``) and in the states that do not open (a deletion, for a grantee).
- (read) ``Arrivals._typed`` types a bare deletion only for ids in force for an unlocked user; a flood of
  deletions of other ids starts nothing.  A bare deletion of a Share/Group is recorded as deleted by
  freshness, as the same deletion read at unlock always was ("swept: gone from the store means deleted");
  a group deletion costs one re-key, conceded in round 24a's "What held" (``group remove`` needs no key).
  A deletion of her own user document typed USER starts no ``_keys_arrived`` (only live bodies) and no
  ``_reshare`` (USER is not GROUP/ROTATION); a missing user document changes no group ("Out of reach").
- (read) gc reads the list of deleted nodes from a snapshot, but checks ``volume.holds`` (a file
  restored meanwhile is skipped) and, for a file with something to drop, reads its lineage again under
  the file's content lock; ``LocalStore.reading`` opens its own read-only connection per thread and
  checks the path is no link, as at open.
- (read) ``Requests.turn`` is per user (per session); no handler takes the turn again, so no request
  waits for another of the same user.
- (read) ``writes_where_it_left`` (authorship.py:355): the walk keeps a ``seen`` set and refuses a folder
  met twice, so a cycle of ``left_from`` parents ends in a refusal, not a loop; its cost is one step per
  distinct folder.
- Not tried for lack of time: a long-hanging link-store server holding her ``turn`` (link push/collect
  while her trash/restore wait: the link store's operator, not one of this round's parties); gc judging
  on a snapshot older than the tree beyond the ``holds`` check (only a race would show it); the owner's
  own device under holes 1-4's replays (round 18 covers her own deletion replayed).
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

import adversary
import pytest
from attack_scenes import recipients_dek
from conftest import PouchServer, first_device, fusevault, mounted, settled, wait_for
from services.test_trust_attack_round4 import _alarms

from fusevault.crypto import aead
from fusevault.crypto.signing import sign_doc
from fusevault.encoding import b64e
from fusevault.vault.model.nodes import open_node_attrs
from mount.test_trust_attack_round22 import docs_shared_with_bob
from mount.test_trust_writes import BOB, CAROL, _admin, _key, _node_fid


def _bobs_touch(vault: Path, doc: dict, dek: bytes) -> tuple[dict, int]:
    """alice's node document ``doc`` with its mtime moved, signed by bob (WRITE on its folder): a genuine
    write of his, (the document, the new mtime)."""
    fid = doc["_id"]
    attrs = open_node_attrs(doc, dek)
    attrs["mtime"] = attrs["mtime"] + 3_600 * 10**9
    body = {k: v for k, v in doc.items() if k not in ("_rev", "sig")}
    body["enc"] = b64e(aead.seal(dek, json.dumps(attrs).encode(), aead.ad("node", fid)))
    bob = _key(vault, "bob", BOB)
    return sign_doc(bob.user_id, bob.identity.sign, body), attrs["mtime"]


def _her_deleted_and_restored_file_seen_by_carol(url: str, tmp_path: Path) -> tuple[Path, str, dict, dict,
                                                                                     bytes]:
    """alice's docs (bob WRITE, carol READ) with notes.txt, which she deleted and restored (the server
    keeps her signed deletion: returned); carol's device joins after and sees it live:
    (carol's vault, the file's fid, her deletion, her restored document, the file's DEK)."""
    laptop = first_device(url, tmp_path)
    docs_shared_with_bob(laptop, tmp_path / "a")  # docs/notes.txt, bob WRITE on docs
    _admin(laptop, "user", "add", "carol", "--uid", "2002", passphrase=CAROL)
    fid = _node_fid(laptop, "alice", "notes.txt")
    with mounted(laptop, tmp_path / "a") as a:
        shared = fusevault("share", a / "docs", "--with", "carol", "--perm", "READ")
        assert shared.returncode == 0, shared.stderr
        os.unlink(a / "docs" / "notes.txt")  # she deletes it ...
        wait_for(lambda: settled(a), "the deletion pushed")
        deletion = adversary.get(laptop, fid)  # her signed deletion, kept by the server
        assert deletion is not None and deletion.get("delete") is True
        restored = fusevault("restore", a / "docs" / "notes.txt")  # ... and restores it
        assert restored.returncode == 0, restored.stderr
        wait_for(lambda: settled(a), "the restore pushed")
    live = adversary.get(laptop, fid)
    assert live is not None and not live.get("delete")
    carols = tmp_path / "carols"
    joined = fusevault("init", carols, "--join", url, "--user", "carol", passphrase=CAROL)
    assert joined.returncode == 0, joined.stderr
    return carols, fid, deletion, live, recipients_dek(laptop, "bob", BOB, fid)


SEEN = ("c", "shared", "alice", "docs", "notes.txt")


def _replayed(db: adversary.Server, carols: Path, deletion: dict) -> None:
    """The server serves her old deletion again, over her restored file; carol's device stores it."""
    rev = db.put(deletion)
    wait_for(lambda: (adversary.get(carols, deletion["_id"]) or {}).get("_rev") == rev, "the replay stored")


def test_a_replayed_old_deletion_of_hers_does_not_silently_take_her_file_from_a_readers_device(
        tmp_path: Path) -> None:
    server = PouchServer(tmp_path / "pouch")
    url = f"{server.start()}/vault"
    try:
        carols, fid, deletion, _, _ = _her_deleted_and_restored_file_seen_by_carol(url, tmp_path)
        seen = tmp_path.joinpath(*SEEN)
        with mounted(carols, tmp_path / "c", "--user", "carol", passphrase=CAROL) as c:
            wait_for(lambda: settled(c) and seen.exists(), "carol's device to see docs/notes.txt")
            _replayed(adversary.Server(url), carols, deletion)
            wait_for(lambda: not seen.exists() or any(fid in x["text"] for x in _alarms(c)),
                     "the replay taken in or refused")
            deadline = time.monotonic() + 5  # an alarm said just after the file left would do
            while not (said := [(x["kind"], x["text"][:120]) for x in _alarms(c) if fid in x["text"]]) \
                    and time.monotonic() < deadline:
                time.sleep(0.2)
            shown = seen.exists()
        assert shown or said, (
            "the server served again alice's old signed deletion of docs/notes.txt, older than the restored "
            "state carol's device had seen and shown: the file left carol's view, nothing said")
    finally:
        server.stop()


@pytest.mark.parametrize("replayed", [
    True,  # hole 2
    False])  # the control: bob's write taken in
def test_a_replayed_old_deletion_of_hers_does_not_lock_a_writer_out_of_her_file_on_a_readers_device(
        tmp_path: Path, replayed: bool) -> None:
    server = PouchServer(tmp_path / "pouch")
    url = f"{server.start()}/vault"
    try:
        carols, fid, deletion, live, dek = _her_deleted_and_restored_file_seen_by_carol(url, tmp_path)
        seen = tmp_path.joinpath(*SEEN)
        db = adversary.Server(url)
        with mounted(carols, tmp_path / "c", "--user", "carol", passphrase=CAROL) as c:
            wait_for(lambda: settled(c) and seen.exists(), "carol's device to see docs/notes.txt")
            if replayed:
                _replayed(db, carols, deletion)
            touch, mtime = _bobs_touch(carols, live, dek)
            rev = db.put(touch)  # bob, WRITE on docs, writes her file (a peer of his sends it)
            wait_for(lambda: (adversary.get(carols, fid) or {}).get("_rev") == rev, "bob's write stored")
            refused = [(x["kind"], x["text"][:140]) for x in wait_for(
                lambda: [x for x in _alarms(c) if x["kind"] == "forged-write" and fid in x["text"]]
                or (seen.exists() and seen.stat().st_mtime_ns == mtime and [None]),
                "bob's write taken in or refused") if x is not None]
            got = seen.stat().st_mtime_ns if seen.exists() else None
        assert got == mtime and not refused, (
            f"bob's genuine write of docs/notes.txt (WRITE on docs) is refused on carol's device as a "
            f"forgery "
            f"once the server replayed alice's old deletion (a state older than what carol saw): "
            f"mtime {got} (his: {mtime}); said: {refused}")
    finally:
        server.stop()


def test_her_old_deletion_put_into_a_readers_store_does_not_silently_hide_her_file_at_the_next_mount(
        tmp_path: Path) -> None:
    server = PouchServer(tmp_path / "pouch")
    url = f"{server.start()}/vault"
    try:
        carols, fid, deletion, _, _ = _her_deleted_and_restored_file_seen_by_carol(url, tmp_path)
        seen = tmp_path.joinpath(*SEEN)
        with mounted(carols, tmp_path / "c", "--user", "carol", passphrase=CAROL) as c:
            wait_for(lambda: settled(c) and seen.exists(), "carol's device to see docs/notes.txt")
        server.stop()  # nothing from the server at the next mount: only the store writer's row
        adversary.put(carols, deletion)  # a writer of carol's vault folder puts alice's old deletion back
        with mounted(carols, tmp_path / "c", "--user", "carol", passphrase=CAROL) as c:
            shown = seen.exists()
            said = [(x["kind"], x["text"][:120]) for x in _alarms(c) if fid in x["text"]]
        assert shown or said, (
            "a writer of carol's vault folder put back alice's old signed deletion of docs/notes.txt, older "
            "than the restored state carol's device had seen: at her next mount the file is gone, nothing "
            "said")
    finally:
        server.stop()


@pytest.mark.parametrize("replayed", [
    True,  # hole 4, fixed: the ledger changes owner_trashed only from a state it takes
    False])  # the control: round 24a (3)'s refusal
def test_a_replayed_live_state_of_hers_does_not_let_a_writer_bring_back_her_trashed_file_on_a_readers_device(
        tmp_path: Path, replayed: bool) -> None:
    server = PouchServer(tmp_path / "pouch")
    url = f"{server.start()}/vault"
    try:
        laptop = first_device(url, tmp_path)
        docs_shared_with_bob(laptop, tmp_path / "a")  # docs/notes.txt, bob WRITE on docs
        _admin(laptop, "user", "add", "carol", "--uid", "2002", passphrase=CAROL)
        fid = _node_fid(laptop, "alice", "notes.txt")
        with mounted(laptop, tmp_path / "a") as a:
            shared = fusevault("share", a / "docs", "--with", "carol", "--perm", "READ")
            assert shared.returncode == 0, shared.stderr
            wait_for(lambda: settled(a), "the share pushed")
        live = adversary.get(laptop, fid)  # her live state, signed by her
        dek = recipients_dek(laptop, "bob", BOB, fid)
        carols = tmp_path / "carols"
        joined = fusevault("init", carols, "--join", url, "--user", "carol", passphrase=CAROL)
        assert joined.returncode == 0, joined.stderr
        seen = tmp_path.joinpath(*SEEN)
        with mounted(carols, tmp_path / "c", "--user", "carol", passphrase=CAROL) as c:
            wait_for(lambda: settled(c) and seen.exists(), "carol's device to see docs/notes.txt")
        with mounted(laptop, tmp_path / "a") as a:
            os.unlink(a / "docs" / "notes.txt")  # she puts it in her trash
            wait_for(lambda: settled(a), "the deletion pushed")
        db = adversary.Server(url)
        with mounted(carols, tmp_path / "c", "--user", "carol", passphrase=CAROL) as c:
            wait_for(lambda: settled(c) and not seen.exists(), "carol's device to see it go")
            if replayed:  # the server serves her older live state: refused as a rollback, said
                _replayed(db, carols, live)
            touch, _ = _bobs_touch(carols, live, dek)  # bob brings it back into docs, as it was
            rev = db.put(touch)
            wait_for(lambda: (adversary.get(carols, fid) or {}).get("_rev") == rev, "bob's document stored")
            wait_for(lambda: seen.exists() or any(x["kind"] == "forged-write" and fid in x["text"]
                                                  for x in _alarms(c)), "bob's document taken in or refused")
            back = seen.exists()
            said = [(x["kind"], x["text"][:120]) for x in _alarms(c) if fid in x["text"]]
        assert not back, (
            f"bob, a writer of docs, brought back on carol's device alice's file she put in her trash, shown "
            f"as hers, once the server replayed her older live state; said: {said}")
    finally:
        server.stop()
