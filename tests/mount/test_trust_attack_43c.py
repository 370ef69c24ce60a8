"""Round 43c, real mount: 43c (3), (4), (6) (tests/unit/test_attack_43c.py) seen at a mount; (7), (8)
found here.  (6): ``test_bobs_rename_beside_her_unshare_is_kept`` (his rename of team/sub beside her
unshare's re-key in place: team/sub shown, nothing said).

Attack: her team/plan.txt moved out of team (shared WRITE with bob) to the top, re-keyed, "private now"
written (tests/mount/test_writers_copy.py ``_moved_out_beside_old``).  The server (or a writer of
store.sqlite) serves bob's old-key branch (his edit in team, a state of his never seen, its version
withheld: 42b (3)) as the current revision, and beside it ``HER_LEAVES`` (16) bodies of her node with a
bad signature (her document, its sealed part altered), one generation above her own leaf.

Seen: her mount shows no "plan.txt" at the top: her_leaves.py ``_her_leaf`` opens only the 16 leaves ranked
first among those saying owner alice, none verifies, hers is never looked at; the load places her file
where bob's document says (team/plan.txt, its version withheld), as before 42b's fix.  The 16 are refused
and said at the settling, hers then waits for his version: her state hidden for the session (for good if
the server serves 16 fresh ones at each pull).

(4): the same with no bad leaf, her own state of before the move (signed by her, in team, the old key)
served as one leaf above hers: ``_her_leaf`` takes it, ``loaded_copy`` is false beside it (his epoch is
not below), her moved-out leaf is never tried.  Seen: only team/plan.txt (EIO), a forged-write "moved by
bob ... from or into a folder they hold no WRITE on" (false: 42b (4)) and a record alarm: 42b (3) whole.

Cause, impact, fix: see tests/unit/test_attack_43c.py (3), (4).  Control: with 3 bad leaves her file
shows.  Run 05:43 UTC: each xfail fails at its assertion under --runxfail (1 run each).

7. **A document the server plants at his copy's id: his edit lost, unsaid (medium).**  Attack: round
   41b's scene (bob saves proj/notes.txt while she moves it out, "private now").  The server sees bob's
   version documents as he pushes them (their ``fid`` is a clear field) and, before her device pulls his
   branch, puts a document of any type at ``edit_copy_ident(fid, vid)``'s id for each (sha256 of clear
   values: the id is no function of a key).  Seen (2 runs of 2; control with nothing planted: the copy
   "bob's words" is made): her mount shows only notes.txt "private now", no copy, no alarm; bob's branch
   closed.  Cause: services/conflict_copies.py ``conflict_copy`` takes any stored document at the copy's id
   (``store.get(fid) is not None``) for "made already, here or by another device" and returns; the
   caller then closes his leaf.  (Rule 4's ``copy_ident`` from the revision id is as plantable: older.)
   Impact: a member's concurrent edit (or her own other device's, rule 4) silently dropped by the server,
   though her device saw it: no withholding needed.  Fix: "made already" only for a document at that id
   that verifies as a conflict copy of this file (signed by her or a WRITE member, opens under the derived
   key, a node whose head is the loser's contents); anything else there is said and the copy made under
   another derived id (a counter in the derivation), or the leaf left open and said.  Tests:
   ``test_his_edit_is_copied_or_said_when_the_server_plants_its_copy_id``, control
   ``test_control_his_edit_is_copied_with_nothing_planted``.

8. **A member's state claiming a higher epoch wins rule 2 over her unshare (medium).** team/ shared WRITE
   with bob, READ with carol; team/sub a folder. She unshares carol (team/sub re-keyed in place). Beside it,
   bob's state of team/sub made over the one before (the key he, and carol, held), with epoch 2**40 sealed
   in (and in the clear field): his chmod/rename/xattr, as his client could do at every commit. Seen (2
   runs; nothing said; control with his epoch as it was: her new key stands): the current document of
   team/sub is his, epoch 2**40, and the key carol held opens it. Cause: services/conflict_rules.py ``decide``
   rule 2 keeps ``max`` by (epoch, ctime): the epoch is what the signer says; a member's state is
   ``leaf_verdict`` KEPT with any epoch (no check that it is the held one's, nor that he can re-key).
   Impact: the unshare undone for that folder (or empty file): carol's old key is the node's again, its
   names and what is written into an empty file next are hers to read; nothing said. Fix: see
   tests/unit/test_attack_43c.py (8). Tests:
   ``test_bobs_state_claiming_a_high_epoch_does_not_undo_her_unshare``, control
   ``test_control_bobs_state_beside_her_unshare_leaves_her_new_key``.
"""

from __future__ import annotations

import contextlib
import json
import os
import time
from pathlib import Path

import adversary
import pytest
from attack_scenes import add_users, recipients_dek, share
from conftest import PouchServer, fusevault, mounted, new_device, settled, wait_for

from fusevault.crypto import aead
from fusevault.crypto.signing import sign_doc
from fusevault.encoding import b64e
from fusevault.store import replica
from fusevault.store.local import LocalStore
from fusevault.vault.model.nodes import VERSION, open_node_attrs
from fusevault.vault.services.conflict_copies import edit_copy_ident
from fusevault.vault.tree.her_leaves import HER_LEAVES
from mount.test_trust_attack_39b import _proj_with_bob
from mount.test_trust_attack_41b import _tree_of
from mount.test_trust_attack_42b import _said
from mount.test_trust_attack_round22b import _bobs_branch, _settled
from mount.test_trust_rollback import alarms
from mount.test_trust_writes import BOB, _key, _node_fid
from mount.test_writers_copy import _moved_out_beside_old

# Some scenes stop the server and start it again: the devices retry it every second (conftest.py).
pytestmark = pytest.mark.usefixtures("quick_retry")


def _put_above(vault: Path, fid: str, leaves: list[tuple[str, dict]]) -> None:
    """Each body stored as a sibling branch one generation above her current revision (a made-up parent
    at her generation, under her revision's parent), its revision id ``G+1-<id>``."""
    store = LocalStore(vault / "store.sqlite")
    try:
        history = replica.current_history(store, fid)
        generation = int(history[0].split("-")[0])
        for rid, body in leaves:
            doc = {**body, "_id": fid, "_rev": f"{generation + 1}-{rid}"}
            doc["_revisions"] = {"start": generation + 1,
                                 "ids": [rid, "c" * 31 + rid[-1]] + [h.split("-", 1)[1] for h in history[1:]]}
            replica.store_revisions(store, [doc])
    finally:
        store.close()


def _bobs_body(vault: Path, fid: str, before: dict, dek: bytes, change: dict) -> dict:
    attrs = {**open_node_attrs(before, dek), **change}
    body = {k: v for k, v in before.items() if not k.startswith("_") and k != "sig"} | {"_id": fid}
    plain = json.dumps(attrs, separators=(",", ":")).encode()
    body["enc"] = b64e(aead.seal(dek, plain, aead.ad("node", fid)))
    bob = _key(vault, "bob", BOB)
    return sign_doc(bob.user_id, bob.identity.sign, body)


def _buried(vault: Path, tmp_path: Path, forged: int, older: bool = False
            ) -> tuple[dict[str, object], list[dict]]:
    """His copy branch current; ``forged`` badly signed bodies of hers above her leaf; ``older``: her
    own state of before the move (signed by her, in team, the old key) served as one more leaf above."""
    fid, before, dek = _moved_out_beside_old(vault, tmp_path)
    team = _node_fid(vault, "alice", "team")
    hers = adversary.get(vault, fid)
    assert hers is not None
    bad = {k: v for k, v in hers.items() if not k.startswith("_")}
    tail = "A" * 8 if bad["enc"][-8:] != "A" * 8 else "B" * 8
    bad["enc"] = bad["enc"][:-8] + tail  # her signature no longer holds
    his = _bobs_body(vault, fid, before, dek, {"links": [[team, "plan.txt"]], "seq": ["b0bdev", 7],
                                               "head": "9" * 32})
    leaves = [("f" * 32, his)] + [("e" * 30 + f"{i:02x}", bad) for i in range(forged)]
    if older:
        leaves.append(("d" * 32, {k: v for k, v in before.items() if not k.startswith("_")}))
    _put_above(vault, fid, leaves)
    with adversary.store_of(vault) as store:
        current = store.get(fid)
        assert current is not None and current["_rev"].endswith("f" * 32), current
    with mounted(vault, tmp_path / "mnt") as mnt:
        _settled(mnt / "no such file", wait=4)
        files: dict[str, object] = {}
        for p in sorted(mnt.rglob("*")):
            if p.is_file():
                try:
                    files[str(p.relative_to(mnt))] = p.read_bytes()
                except OSError as err:
                    files[str(p.relative_to(mnt))] = f"error {err.errno}"
        return files, [x for x in alarms(mnt) if x["kind"] != "ledger"]


def test_control_her_leaf_beside_three_badly_signed_leaves_is_shown(vault: Path, tmp_path: Path) -> None:
    files, said = _buried(vault, tmp_path, 3)
    assert files.get("plan.txt") == b"private now", (files, said)


def test_her_leaf_under_sixteen_badly_signed_leaves_is_shown(vault: Path, tmp_path: Path) -> None:
    files, said = _buried(vault, tmp_path, HER_LEAVES)
    assert files.get("plan.txt") == b"private now", (files, said)


def test_her_leaf_beside_her_older_state_served_above_it_is_shown(vault: Path, tmp_path: Path) -> None:
    files, said = _buried(vault, tmp_path, 0, older=True)
    assert files.get("plan.txt") == b"private now", (files, said)


# --- 43c (7): a document the server plants at his copy's id first

def _member_edits_with_copy_ids_planted(tmp_path: Path, plant: bool) -> dict[str, object]:
    """tests/mount/test_trust_attack_41b.py's scene (bob saves proj/notes.txt while she moves it out and
    writes "private now"), and, as the server comes back, ``plant``: a document (of no type fusevault
    reads) at each id ``edit_copy_ident`` gives for a version of that file (their ``fid`` is clear: the
    server computes the ids from what it holds)."""
    seen: dict[str, object] = {}
    server = PouchServer(tmp_path / "pouch")
    url = f"{server.start()}/vault"
    try:
        laptop, bobs = _proj_with_bob(url, tmp_path, "WRITE")
        fid = _node_fid(laptop, "alice", "notes.txt")
        a, bm = tmp_path / "a", tmp_path / "bm"
        with mounted(laptop, a), mounted(bobs, bm, "--user", "bob", passphrase=BOB):
            theirs = bm / "shared" / "alice" / "proj" / "notes.txt"
            wait_for(lambda: settled(a) and settled(bm) and theirs.exists(), "both")
            server.kill()
            os.rename(a / "proj" / "notes.txt", a / "notes.txt")
            (a / "notes.txt").write_text("private now")
            theirs.write_text("bob's words")
            time.sleep(1.5)
            with adversary.store_of(bobs) as store:  # what the server gets of bob's push (clear fields)
                heads = [d["_id"] for d in store.iter_type(VERSION) if d.get("fid") == fid]
            server.start()
            if plant:
                for head in heads:
                    cid = edit_copy_ident(fid, head, b"\0" * 32)[0]  # the id is no function of the key
                    adversary.Server(url).put({"_id": cid, "type": "planted"})
            time.sleep(3)
            wait_for(lambda: settled(a) and settled(bm), "both settled")
            time.sleep(3)
            seen["alice"] = _tree_of(a), [x for x in alarms(a) if x["kind"] != "ledger"]
    finally:
        server.stop()
    return seen


def test_his_edit_is_copied_or_said_when_the_server_plants_its_copy_id(tmp_path: Path) -> None:
    seen = _member_edits_with_copy_ids_planted(tmp_path, plant=True)
    files, said = seen["alice"]  # type: ignore[misc]
    assert b"bob's words" in files.values() or said, seen


def test_control_his_edit_is_copied_with_nothing_planted(tmp_path: Path) -> None:
    seen = _member_edits_with_copy_ids_planted(tmp_path, plant=False)
    files, _ = seen["alice"]  # type: ignore[misc]
    assert b"bob's words" in files.values() and files.get("notes.txt") == b"private now", seen


# --- 43c (8): a member's state claiming a higher epoch wins rule 2 over her re-key

def _unshared_beside_bobs_high_epoch(vault: Path, tmp_path: Path, epoch: int | None,
                                     rename: bool = False) -> tuple[dict, bytes]:
    """team/sub, team shared WRITE with bob and READ with carol; she unshares carol (team/sub re-keyed in
    place).  Beside her re-keyed state, bob's (rev "0": hers stays current) made over the state before:
    the key he held then (carol's too), ``epoch`` sealed in (None: as it was), a fresh seq of his.  (The
    current document of team/sub once settled, the key carol held.)"""
    add_users(vault, "bob", "carol")
    with mounted(vault, tmp_path / "mnt") as mnt:
        (mnt / "team" / "sub").mkdir(parents=True)
        assert share(mnt, "team", "bob", "WRITE") is not None
        assert share(mnt, "team", "carol", "READ") is not None
    sub = _node_fid(vault, "alice", "sub")
    before, old = adversary.get(vault, sub), recipients_dek(vault, "bob", BOB, sub)
    assert before is not None
    with mounted(vault, tmp_path / "mnt") as mnt:
        assert fusevault("unshare", mnt / "team", "--with", "carol").returncode == 0
        wait_for(lambda: adversary.get(vault, sub)["epoch"] > before["epoch"], "the unshare's re-key")
    change: dict = {"seq": ["b0bdev", 7], "xattrs": {}}
    if rename:  # his rename of team/sub to team/sub2 (where he writes), made after her unshare
        change["links"] = [[_node_fid(vault, "alice", "team"), "sub2"]]
    if epoch is not None:
        change["epoch"] = epoch
        before = {**before, "epoch": epoch}
    _bobs_branch(vault, sub, change, before, old, "0")
    with mounted(vault, tmp_path / "mnt") as mnt:
        _settled(mnt / "no such file", wait=4)
        names = sorted(p.name for p in (mnt / "team").iterdir())
        said = [x for x in alarms(mnt) if x["kind"] != "ledger"]
    current = adversary.get(vault, sub)
    assert current is not None
    return {**current, "shown": names, "said": said}, old


def _opens(doc: dict, dek: bytes) -> bool:
    try:
        open_node_attrs(doc, dek)
        return True
    except Exception:  # noqa: BLE001  (any failure to open: not that key)
        return False


def test_control_bobs_state_beside_her_unshare_leaves_her_new_key(vault: Path, tmp_path: Path) -> None:
    current, old = _unshared_beside_bobs_high_epoch(vault, tmp_path, None)
    assert not _opens(current, old), (current["epoch"], current["said"])


def test_bobs_state_claiming_a_high_epoch_does_not_undo_her_unshare(vault: Path, tmp_path: Path) -> None:
    current, old = _unshared_beside_bobs_high_epoch(vault, tmp_path, 2**40)
    assert not _opens(current, old), (current["epoch"], current["said"])


def test_bobs_rename_beside_her_unshare_is_kept(vault: Path, tmp_path: Path) -> None:
    """tests/unit/test_attack_43c.py (6) at a mount: his rename, where he writes, beside her re-key."""
    current, old = _unshared_beside_bobs_high_epoch(vault, tmp_path, None, rename=True)
    assert current["shown"] == ["sub2"] or current["said"], (current["shown"], current["said"])


# --- 43c (5): beside her re-key in place, her later move on her other device

def _unshared_beside_her_later_move(tmp_path: Path, kind: str) -> dict[str, object]:
    """proj/ shared READ with bob, proj/blank (an empty file, or a folder: ``kind``) and proj/archive/.
    Both her devices mounted; the server goes away; the desktop unshares bob (proj/blank re-keyed in
    place: no version to seal again, only its key and epoch); later the laptop moves proj/blank into
    proj/archive (within the share as it knows it: no re-key).  Where each device shows it once
    settled, what is said, and whether the key bob held still opens its document on the server."""
    seen: dict[str, object] = {}
    server = PouchServer(tmp_path / "pouch")
    url = f"{server.start()}/vault"
    try:
        laptop, _ = _proj_with_bob(url, tmp_path, "READ")
        a, b = tmp_path / "a", tmp_path / "b"
        with mounted(laptop, a):
            (a / "proj" / "archive").mkdir()
            if kind == "folder":
                (a / "proj" / "blank").mkdir()
            else:
                (a / "proj" / "blank").write_bytes(b"")
            wait_for(lambda: settled(a), "blank pushed")
        fid = _node_fid(laptop, "alice", "blank")
        old = adversary.Server(url).get(fid)
        assert old is not None
        dek = recipients_dek(laptop, "bob", BOB, fid)
        desktop = new_device(url, tmp_path, "desktop")
        with mounted(laptop, a), mounted(desktop, b):
            wait_for(lambda: settled(a) and settled(b) and (b / "proj" / "blank").exists()
                     and (b / "proj" / "archive").exists(), "both")
            server.kill()
            unshared = fusevault("unshare", b / "proj", "--with", "bob")
            assert unshared.returncode == 0, unshared.stderr
            wait_for(lambda: (adversary.get(desktop, fid) or {}).get("epoch", 0) > old.get("epoch", 0),
                     "the unshare's re-key")
            os.rename(a / "proj" / "blank", a / "proj" / "archive" / "blank")
            time.sleep(1.5)
            server.start()

            def where(m: Path) -> list[str]:
                return sorted(str(p.relative_to(m)) for p in m.rglob("*"))

            with contextlib.suppress(pytest.fail.Exception):  # what each shows is the verdict
                wait_for(lambda: settled(a) and settled(b) and where(a) == where(b)
                         and "proj/blank" not in where(a), "agreed", timeout=40)
            time.sleep(2)
            seen["bob opens"] = _opens(adversary.Server(url).get(fid) or {}, dek)
            seen["laptop"] = where(a), _said(a)
            seen["desktop"] = where(b), _said(b)
    finally:
        server.stop()
    return seen


@pytest.mark.parametrize("kind", ["empty", "folder"])
def test_her_later_move_beside_her_unshare_on_her_other_device_is_kept(tmp_path: Path, kind: str) -> None:
    """tests/unit/test_attack_43c.py (5) at a mount: her move stands on both devices, under the key the
    unshare made (bob's old key opens nothing)."""
    seen = _unshared_beside_her_later_move(tmp_path, kind)
    for device in ("laptop", "desktop"):
        shown, _ = seen[device]  # type: ignore[misc]
        assert "proj/archive/blank" in shown and "proj/blank" not in shown, (device, seen)
    assert not seen["bob opens"], seen
